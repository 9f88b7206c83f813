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

  # A boot-time job with the common sandbox: it runs once, ordered after the
  # units it requires or wants, and stays active when done, so units ordered
  # after it wait for its work (Type=oneshot, RemainAfterExit). `unit` is the
  # systemd.services entry without wantedBy and after; its serviceConfig is
  # added to (and may override) the profile.
  oneshot =
    unit:
    unit
    // {
      wantedBy = [ "multi-user.target" ];
      after = unit.requires or [ ] ++ unit.wants or [ ];
      serviceConfig =
        common
        // {
          Type = "oneshot";
          RemainAfterExit = true;
        }
        // unit.serviceConfig;
    };

  # JVM units (brokers, Connect, the topic oneshot). No MemoryDenyWriteExecute:
  # the JIT needs W+X pages; no ProcSubset=pid: the JVM reads /proc/meminfo.
  jvm = common;

  # The Rust stages: additionally no W+X memory and only /proc/<pid>.
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
