# systemd sandboxing shared by Pulsewire's units, aimed at
# `systemd-analyze security` rating "OK" or better, and the profile of its
# run-once boot jobs (oneshot). Builtins only.
rec {
  # Every unit: its own dynamic user, read-only system, no devices, no
  # capabilities, IP sockets plus the journal/notify socket only.
  common = {
    DynamicUser = true;
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    DevicePolicy = "closed";
    LockPersonality = true;
    NoNewPrivileges = true;
    PrivateDevices = true;
    PrivateTmp = true;
    PrivateUsers = true;
    ProtectClock = true;
    ProtectControlGroups = true;
    ProtectHome = true;
    ProtectHostname = true;
    ProtectKernelLogs = true;
    ProtectKernelModules = true;
    ProtectKernelTunables = true;
    ProtectProc = "invisible";
    ProtectSystem = "strict";
    RemoveIPC = true;
    RestrictAddressFamilies = [
      "AF_INET"
      "AF_INET6"
      "AF_UNIX"
    ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
    ];
    # A refused syscall fails with EPERM instead of killing the process.
    SystemCallErrorNumber = "EPERM";
    UMask = "0077";
  };

  # Memory and task limits: every Pulsewire unit sets both (tests/nix/limits.nix
  # fails on one without), so that a leak or a flood stops (and restarts) that
  # unit instead of starving the host. Sizes: docs/delivery.md, "Memory and
  # task limits".
  limits =
    { memoryMax, tasksMax }:
    {
      MemoryMax = memoryMax;
      TasksMax = tasksMax;
    };

  # Shell scripts run by a oneshot or a timer (curl, jq, coreutils): a few
  # MB each, a handful of processes at a time.
  scriptLimits = limits {
    memoryMax = "64M";
    tasksMax = 32;
  };

  # A boot-time job with the common sandbox: it runs once, ordered after the
  # units it requires or wants, and stays active when done, so units ordered
  # after it wait for its work (Type=oneshot, RemainAfterExit). `unit` is the
  # systemd.services entry without wantedBy and after; its serviceConfig is
  # added to (and may override) the profile, which has scriptLimits.
  oneshot =
    unit:
    unit
    // {
      wantedBy = [ "multi-user.target" ];
      after = unit.requires or [ ] ++ unit.wants or [ ];
      serviceConfig =
        common
        // scriptLimits
        // {
          Type = "oneshot";
          RemainAfterExit = true;
        }
        // unit.serviceConfig;
    };

  # A boot job that must run as root because it makes root-owned files (the
  # first-boot secrets): the common sandbox without a user of its own (no
  # DynamicUser, no user namespace, in which root's capabilities would not
  # reach the host's files), keeping only the capabilities to take over and
  # chmod a file that is not root's yet, and the chown calls that
  # `~@privileged` refuses. No network at all.
  root =
    builtins.removeAttrs common [
      "DynamicUser"
      "PrivateUsers"
      "RemoveIPC"
    ]
    // {
      CapabilityBoundingSet = [
        "CAP_CHOWN"
        "CAP_FOWNER"
      ];
      IPAddressDeny = "any";
      MemoryDenyWriteExecute = true;
      PrivateNetwork = true;
      ProcSubset = "pid";
      RestrictAddressFamilies = [ "AF_UNIX" ];
      SystemCallFilter = common.SystemCallFilter ++ [ "@chown" ];
    };

  # A JVM's memory besides its heap (MiB), capped by flags where the JVM can
  # cap it: class metadata, direct buffers (NIO copies each socket read or
  # write of up to an 8 MiB record through one), the JIT's code cache (its
  # default reservation) and the rest (thread stacks, GC structures, malloc).
  jvmNative = {
    metaspace = 128;
    directMemory = 256;
    codeCache = 240;
    other = 256;
  };

  # "512m", "1g", "1024k" (a -Xmx size) in MiB.
  heapMiB =
    heap:
    let
      m = builtins.match "([0-9]+)([kKmMgG])" heap;
      n = builtins.fromJSON (builtins.elemAt m 0);
      unit = builtins.elemAt m 1;
    in
    if m == null then
      throw "pulsewire: JVM heap `${heap}` is not a size like 512m or 1g"
    else if unit == "g" || unit == "G" then
      n * 1024
    else if unit == "k" || unit == "K" then
      (n + 1023) / 1024
    else
      n;

  # The JVM's memory flags for KAFKA_HEAP_OPTS: the heap and the caps above.
  jvmMemoryOpts =
    heap:
    "-Xms${heap} -Xmx${heap} -XX:MaxMetaspaceSize=${toString jvmNative.metaspace}m"
    + " -XX:MaxDirectMemorySize=${toString jvmNative.directMemory}m";

  # JVM units (brokers, Connect, the topic oneshot), by their heap: the memory
  # limit is the heap plus everything in jvmNative. No MemoryDenyWriteExecute:
  # the JIT needs W+X pages; no ProcSubset=pid: the JVM reads /proc/meminfo.
  jvm =
    heap:
    common
    // limits {
      memoryMax = "${toString (heapMiB heap + builtins.foldl' builtins.add 0 (builtins.attrValues jvmNative))}M";
      # Measured: a broker runs 112 threads (network, I/O, replica fetchers, GC, JIT), Connect 50.
      tasksMax = 512;
    };

  # The Rust stages: additionally no W+X memory and only /proc/<pid>. Their
  # limits are options (services.pulsewire.<stage>.memoryMax, .tasksMax).
  native = common // {
    MemoryDenyWriteExecute = true;
    ProcSubset = "pid";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
      "~@resources"
    ];
  };
}
