import CaravanCore
import Foundation
public import Logging
import Synchronization

/// Writes one JSON object a line: `{"ts","level","msg","logger", ...metadata}`. Used when stdout is not a
/// terminal, so that log collectors read fields rather than prose.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let output: JSONLogOutput

    /// A handler for `label` writing to standard output.
    public init(label: String, level: Logger.Level, output: JSONLogOutput = .standardOutput) {
        self.label = label
        self.logLevel = level
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: JSONValue] = [
            "ts": .string(Clock.rfc3339(WallClock.system.nowMilliseconds())),
            "level": .string(event.level.rawValue),
            "msg": .string(event.message.description),
            "logger": .string(label),
        ]
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        for (key, value) in merged { object[key] = Self.json(value) }
        output.write(JSONValue.object(object).canonicalText + "\n")
    }

    static func json(_ value: Logger.Metadata.Value) -> JSONValue {
        switch value {
        case .string(let text): .string(text)
        case .stringConvertible(let convertible): .string(convertible.description)
        case .array(let values): .array(values.map(json))
        case .dictionary(let dictionary): .object(dictionary.mapValues(json))
        }
    }
}

/// Where `JSONLogHandler` writes: standard output, or memory (for tests that assert on log lines).
public final class JSONLogOutput: Sendable {
    private let captures: Bool
    private let lines = Mutex<[String]>([])

    private init(captures: Bool) {
        self.captures = captures
    }

    /// Writes to standard output.
    public static let standardOutput = JSONLogOutput(captures: false)

    /// Keeps the lines in memory.
    public static func memory() -> JSONLogOutput { JSONLogOutput(captures: true) }

    /// The lines written so far (memory output only).
    public var captured: [String] { lines.withLock { $0 } }

    func write(_ line: String) {
        if captures {
            lines.withLock { $0.append(line) }
        } else {
            FileHandle.standardOutput.write(Data(line.utf8))
        }
    }
}
