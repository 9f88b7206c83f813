"""Where a transactional stage's commit time goes, from its log with librdkafka's `eos` debug
context on (an `E2E_LOG_LEVEL='warn,pulsewire_runtime=debug,librdkafka=debug'
PULSEWIRE_KAFKA_PROPERTIES=debug=eos bench/e2e` run's aggregator.log or processor.log).

  python3 bench/txn_phases.py LOG...

Per log, the p50 / p90 in ms of each phase of a transaction, and how often the coordinator
refused a request with CONCURRENT_TRANSACTIONS:
  registration   begin_transaction → the batch's partitions registered (AddPartitionsToTxn)
  records+offsets registered → AddOffsetsToTxn answered (the records' acks=all produce first)
  offset commit  AddOffsetsToTxn answered → TxnOffsetCommit answered
  end            commit_transaction called → EndTxn answered
  gap            EndTxn answered → the next begin_transaction (the next batch's collection)
"""

import sys
from datetime import datetime

PHASES = ["registration", "records+offsets", "offset commit", "end", "gap"]


def ms(line):
    return datetime.fromisoformat(line[:26]).timestamp() * 1000


def phases(path):
    out = {p: [] for p in PHASES}
    refused = {"AddPartitionsToTxn": 0, "AddOffsetsToTxn": 0}
    t, last_refusal = {}, None
    for line in open(path, errors="replace"):
        if "librdkafka" not in line:
            continue
        # One AddPartitionsToTxn answer is logged once per partition; count answers.
        if "AddPartitionsToTxn response" in line and "concurrent operation" in line:
            refused["AddPartitionsToTxn"] += line[:26] != last_refusal
            last_refusal = line[:26]
        elif "AddOffsetsToTxn response" in line and "CONCURRENT_TRANSACTIONS" in line:
            refused["AddOffsetsToTxn"] += 1
        if "begin_transaction return" in line:
            if "end" in t:
                out["gap"].append(ms(line) - t["end"])
            t = {"begin": ms(line)}
        elif "registered with transaction" in line and "begin" in t and "reg" not in t:
            t["reg"] = ms(line)
            out["registration"].append(t["reg"] - t["begin"])
        elif "AddOffsetsToTxn response" in line and "NO_ERROR" in line and "reg" in t:
            t["offsets"] = ms(line)
            out["records+offsets"].append(t["offsets"] - t["reg"])
        elif "rd_kafka_txn_handle_TxnOffsetCommit" in line and "offsets" in t:
            out["offset commit"].append(ms(line) - t["offsets"])
        elif "API called: commit_transaction" in line:
            t["commit"] = ms(line)
        elif "EndTxn returned NO_ERROR" in line and "commit" in t:
            t["end"] = ms(line)
            out["end"].append(t["end"] - t["commit"])
    return out, refused


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def main():
    for path in sys.argv[1:]:
        out, refused = phases(path)
        n = len(out["end"])
        print(f"{path}: {n} transactions; CONCURRENT_TRANSACTIONS refusals: "
              + ", ".join(f"{k} {v}" for k, v in refused.items()))
        for p in PHASES:
            if out[p]:
                print(f"  {p:16s} p50 {pct(out[p], 0.5):6.1f}  p90 {pct(out[p], 0.9):6.1f} ms")


if __name__ == "__main__":
    main()
