"""The local Pulsewire stack: three KRaft brokers, Kafka Connect, InfluxDB 2 (the store) and
the four stage services, as plain processes on loopback.

This is the NixOS appliance without Nix (see docs "Why the local stack exists"). Every
setting is rendered by `nixos/lib/pulsewire.nix`, the pure renderer the NixOS modules use,
evaluated with `nix-instantiate`: broker, Connect, topic and connector settings, the store's
setup facts, and each stage service's command (argv, environment, stop timeout) that
nixos/pipeline.nix turns into a unit. Nothing here repeats a flag of a service.

Layout:
  settings   where the stack lives (state, cache, port offset), StackError, log
  render     the one `nix-instantiate` call that gives every setting and command
  processes  starting, tracking (by PID and start time), signalling and stopping processes;
             waits; the machine-wide lock
  kafka      the Kafka classpath (Maven Central, cached), brokers, topics, Connect, the
             connector, and the command-line tools that read topics and consumer groups
  tls        `up --secure-kafka`: the TLS files (provisioning/kafka/generate-tls) and the
             per-principal client properties; the settings come from nixos/lib/kafka-security.nix
  store      InfluxDB 2, started and set up as the appliance sets it up (influx: its API)
  services   the stage binaries: build, run the rendered commands, scrape /metrics
  stack      the whole stack: up, down, status, wipe
  cli        `tests/local/stack up|down|status|kafka-libs`

Files (under tests/local/, git-ignored; PULSEWIRE_LOCAL_STATE and PULSEWIRE_LOCAL_CACHE move them):
  .cache/kafka-<version>/   Kafka classpath resolved from Maven Central (unless KAFKA_HOME)
  .cache/stack.lock         held while a command changes the stack (one stack per port set)
  .state/                   one stack: kafka-<id>/ log dirs, store/ (InfluxDB), secrets/
                            (its password and tokens), kafka-tls/ (with --secure-kafka:
                            the CA, keys and certificates), readings.csv, the rendered
                            *.properties, pids/<component>.pid, logs/<component>.log
  ~/.cache/pulsewire/       influxd and influx, built once per machine (build-influxdb)
"""
