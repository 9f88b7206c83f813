//! `watch` and `lag`: a consumer group draining its topic, and the lag of
//! groups over time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::Res;

pub(crate) fn proc_cpu_rss(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = (f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0);
    Some((cpu, hwm / 1024.0))
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn watch(brokers: &str, group: &str, topic: &str, pid: Option<u32>, timeout_s: u64, label: &str) -> Res {
    let t0 = Instant::now();
    let load_start = loadavg();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let to = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), to)?;
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    if parts.is_empty() {
        return Err(format!("topic {topic} has no partitions").into());
    }
    let mut low = HashMap::new();
    let mut high = HashMap::new();
    for &p in &parts {
        let (l, h) = consumer.fetch_watermarks(topic, p, to)?;
        low.insert(p, l);
        high.insert(p, h);
    }
    let total: i64 = parts.iter().map(|p| high[p] - low[p]).sum();
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition(topic, p);
    }
    let (mut t_first, mut t10, mut t90) = (None, None, None);
    let (mut cpu10, mut cpu90) = (0.0, 0.0);
    let mut last_done: i64 = -1;
    let mut last_change = t0;
    let mut samples = 0u64;
    let mut res = None;
    while t0.elapsed() < Duration::from_secs(timeout_s) {
        std::thread::sleep(Duration::from_millis(50));
        let committed = match consumer.committed_offsets(tpl.clone(), to) {
            Ok(c) => c,
            Err(_) => continue,
        };
        let mut done: i64 = 0;
        for e in committed.elements() {
            if let Offset::Offset(o) = e.offset() {
                done += (o.min(high[&e.partition()]) - low[&e.partition()]).max(0);
            }
        }
        samples += 1;
        let now = t0.elapsed().as_secs_f64();
        let cpu_now = pid.and_then(proc_cpu_rss).map(|x| x.0).unwrap_or(0.0);
        if done > 0 && t_first.is_none() {
            t_first = Some(now);
        }
        if t10.is_none() && done * 10 >= total {
            t10 = Some(now);
            cpu10 = cpu_now;
        }
        if t90.is_none() && done * 10 >= total * 9 {
            t90 = Some(now);
            cpu90 = cpu_now;
        }
        if done != last_done {
            last_done = done;
            last_change = Instant::now();
        }
        let lag = total - done;
        // Transactional inputs carry one control record per transaction; tolerate one per
        // partition once progress has stopped for 3 s.
        let settled = lag <= parts.len() as i64 && last_change.elapsed() > Duration::from_secs(3);
        if lag == 0 || settled {
            let end = if lag == 0 { now } else { (last_change - t0).as_secs_f64() };
            let (cpu, rss) = pid.and_then(proc_cpu_rss).unwrap_or((0.0, 0.0));
            res = Some((end, cpu, rss));
            break;
        }
    }
    let (end, cpu, rss) = res.ok_or("timeout: group did not drain")?;
    let (t10, t90) = (t10.unwrap_or(0.0), t90.unwrap_or(end));
    let steady = if t90 > t10 { 0.8 * total as f64 / (t90 - t10) } else { 0.0 };
    let steady_cpu_per_m = if t90 > t10 && cpu90 > cpu10 { (cpu90 - cpu10) / (0.8 * total as f64) * 1e6 } else { 0.0 };
    println!(
        "{}",
        serde_json::json!({
            "label": label, "topic": topic, "group": group, "messages": total,
            "wall_s": end, "first_commit_s": t_first, "t10_s": t10, "t90_s": t90,
            "rate_total": total as f64 / end, "rate_steady": steady,
            "cpu_s": cpu, "cpu_s_per_million": cpu / total as f64 * 1e6,
            "steady_cpu_s_per_million": steady_cpu_per_m,
            "peak_rss_mb": rss, "load_start": load_start, "load_end": loadavg(), "samples": samples
        })
    );
    Ok(())
}

pub(crate) fn lag(brokers: &str, pairs: &[String], seconds: u64, interval_ms: u64) -> Res {
    let to = Duration::from_secs(5);
    let mut clients = Vec::new();
    for pair in pairs {
        let (g, t) = pair.split_once(':').ok_or("--pair GROUP:TOPIC")?;
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", g)
            .set("enable.auto.commit", "false")
            .create()?;
        clients.push((pair.clone(), t.to_string(), c, Vec::<i64>::new()));
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        for (_, topic, c, series) in clients.iter_mut() {
            let mut tpl = TopicPartitionList::new();
            for p in 0..3 {
                tpl.add_partition(topic, p);
            }
            let mut lag = 0i64;
            if let Ok(com) = c.committed_offsets(tpl, to) {
                for e in com.elements() {
                    let (lo, hi) = c.fetch_watermarks(topic, e.partition(), to).unwrap_or((0, 0));
                    let done = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => lo,
                    };
                    lag += (hi - done).max(0);
                }
                series.push(lag);
            }
        }
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
    let mut out = serde_json::Map::new();
    for (pair, _, _, series) in clients {
        let max = series.iter().copied().max().unwrap_or(-1);
        let last = series.last().copied().unwrap_or(-1);
        out.insert(pair, serde_json::json!({"max": max, "last": last, "series": series}));
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
