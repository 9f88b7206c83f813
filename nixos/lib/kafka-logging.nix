# KAFKA_LOG4J_OPTS for a Kafka JVM that logs everything to stdout (so to the
# journal) instead of the distribution's files under /tmp. Kafka >= 4 logs
# through log4j2, older releases through log4j 1; each gets only its own
# setting, since Kafka 4's scripts warn about any log4j 1 configuration.
{
  lib,
  pkgs,
  kafka,
  # extra loggers: { "org.reflections" = "ERROR"; }
  loggers ? { },
}:
let
  # pkgs.apacheKafka.version is "<scala>-<kafka>", e.g. "2.13-4.1.1".
  kafkaVersion = lib.last (lib.splitString "-" kafka.version);
  allLoggers = {
    "kafka.request.logger" = "WARN";
    "state.change.logger" = "WARN";
  }
  // loggers;
  pattern = "%p [%c{1}] %m%n";

  log4j2 = pkgs.writeText "pulsewire-kafka-log4j2.properties" (
    ''
      status = warn
      appender.stdout.type = Console
      appender.stdout.name = STDOUT
      appender.stdout.layout.type = PatternLayout
      appender.stdout.layout.pattern = ${pattern}
      rootLogger.level = INFO
      rootLogger.appenderRef.stdout.ref = STDOUT
    ''
    + lib.concatStrings (
      lib.imap0 (i: name: ''
        logger.l${toString i}.name = ${name}
        logger.l${toString i}.level = ${allLoggers.${name}}
      '') (builtins.attrNames allLoggers)
    )
  );

  log4j1 = pkgs.writeText "pulsewire-kafka-log4j.properties" (
    ''
      log4j.rootLogger=INFO, stdout
      log4j.appender.stdout=org.apache.log4j.ConsoleAppender
      log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
      log4j.appender.stdout.layout.ConversionPattern=${pattern}
    ''
    + lib.concatStrings (lib.mapAttrsToList (name: level: "log4j.logger.${name}=${level}\n") allLoggers)
  );
in
if lib.versionAtLeast kafkaVersion "4" then
  "-Dlog4j2.configurationFile=${log4j2}"
else
  "-Dlog4j.configuration=file:${log4j1}"
