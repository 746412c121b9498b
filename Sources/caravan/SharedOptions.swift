import ArgumentParser
import CaravanCore
import CaravanServer
import Configuration
import Foundation
import Logging
import SystemPackage

/// Options that every command that opens the database takes. Each is read, in order of precedence, from the
/// flag, from its `CARAVAN_…` environment variable, from the config file, then the built-in default.
struct DatabaseOptions: ParsableArguments {
    @Option(help: "Data directory for the embedded SQLite database. [env: CARAVAN_DATA] (default: ./caravan-data)")
    var data: String?

    @Option(
        help: """
            PostgreSQL URL, postgres://user:password@host:port/database; several nodes may share one. \
            [env: CARAVAN_DATABASE_URL]
            """
    )
    var database: String?

    @Option(
        help: "Configuration file (.json, .yaml or .yml), keys as in the table of the README. [env: CARAVAN_CONFIG]"
    )
    var config: String?

    @Option(
        help: "Least important log level written: trace, debug, info, notice, warning, error. [env: CARAVAN_LOG_LEVEL]"
    )
    var logLevel: String?

    @Option(help: "Log format: json, or text. Default: json when stdout is not a terminal. [env: CARAVAN_LOG_FORMAT]")
    var logFormat: String?

    /// The configuration sources, from most to least important after the flags.
    func reader() async throws -> ConfigReader {
        let environment = EnvironmentVariablesProvider().prefixKeys(with: "caravan")
        let file = config ?? ProcessInfo.processInfo.environment["CARAVAN_CONFIG"]
        guard let file, !file.isEmpty else { return ConfigReader(provider: environment) }
        guard FileManager.default.fileExists(atPath: file) else {
            throw ValidationError("The configuration file \(file) does not exist.")
        }
        if file.hasSuffix(".yaml") || file.hasSuffix(".yml") {
            let yaml = try await FileProvider<YAMLSnapshot>(filePath: FilePath(file))
            return ConfigReader(providers: [environment, yaml])
        }
        let json = try await FileProvider<JSONSnapshot>(filePath: FilePath(file))
        return ConfigReader(providers: [environment, json])
    }

    /// Applies these options (and their environment and file values) onto `configuration`.
    func apply(to configuration: inout ServerConfiguration, from reader: ConfigReader) throws {
        configuration.dataDirectory = data ?? reader.string(forKey: "data") ?? configuration.dataDirectory
        configuration.databaseURL = database ?? reader.string(forKey: "database_url", isSecret: true)
        let level = logLevel ?? reader.string(forKey: "log_level") ?? "info"
        guard let parsed = Logger.Level(rawValue: level) else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical.")
        }
        configuration.logLevel = parsed
    }

    /// Sets up logging once for the process: JSON lines unless stdout is a terminal (or as told).
    func bootstrapLogging(level: Logger.Level, reader: ConfigReader) throws -> Logger {
        let format = logFormat ?? reader.string(forKey: "log_format") ?? (isatty(STDOUT_FILENO) != 0 ? "text" : "json")
        switch format {
        case "json":
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
        case "text":
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardOutput(label: label)
                handler.logLevel = level
                return handler
            }
        default:
            throw ValidationError("--log-format must be json or text.")
        }
        var logger = Logger(label: "caravan")
        logger.logLevel = level
        return logger
    }
}

/// Parses a duration flag (`30s`, `5m`).
func parseDuration(_ text: String?, flag: String) throws -> CaravanDuration? {
    guard let text else { return nil }
    guard let duration = CaravanDuration(parsing: text) else {
        throw ValidationError("\(flag) must be a duration such as 500ms, 30s, 5m or 1h; got \(text).")
    }
    return duration
}
