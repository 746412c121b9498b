import CaravanCore
import Foundation

/// Appends figures to the benchmark record (`docs/bench/results.jsonl`): one JSON object a line, in the shape
/// `scripts/bench_record.py` reads and charts.
struct BenchRecord: Sendable {
    /// The file lines are appended to.
    var path: String
    /// When the benchmark started (RFC 3339, UTC): the date of every line it writes.
    var date: String
    /// The commit measured: short sha, with `-dirty` when tracked files had changes.
    var commit: String
    /// `sqlite`, `postgres`, or `-` for a figure that depends on neither.
    var backend: String

    /// Appends one line per figure: the median of its values, their min and max, and its unit.
    /// - Throws: when the file cannot be opened or written.
    func append(workload: String, figures: [String: [Double]]) throws {
        var text = ""
        for (figure, values) in figures.sorted(by: { $0.key < $1.key }) where !values.isEmpty {
            let sorted = values.sorted()
            let fields: [(String, String)] = [
                ("date", Self.string(date)), ("commit", Self.string(commit)), ("backend", Self.string(backend)),
                ("nproc", String(ProcessInfo.processInfo.activeProcessorCount)), ("workload", Self.string(workload)),
                ("figure", Self.string(figure)), ("value", Self.number(sorted[sorted.count / 2])),
                ("min", Self.number(sorted[0])), ("max", Self.number(sorted[sorted.count - 1])),
                ("unit", Self.string(Self.unit(of: figure))),
            ]
            text += "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}\n"
        }
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }

    /// The unit of a figure, read from its name's suffix (`_ms`, `_s`, `_mb`, `workflows_per_s`, …).
    static func unit(of figure: String) -> String {
        if figure.hasSuffix("workflows_per_s") { return "workflows/s" }
        if figure.hasSuffix("steps_per_s") { return "steps/s" }
        if figure.hasSuffix("items_per_s") { return "items/s" }
        if figure.hasSuffix("requests_per_s") { return "requests/s" }
        if figure.hasSuffix("_ms_per_run") { return "ms/run" }
        if figure.hasSuffix("_bytes_per_run") { return "bytes/run" }
        if figure.hasSuffix("_ms") { return "ms" }
        if figure.hasSuffix("_s") { return "s" }
        if figure.hasSuffix("_mb") { return "MB" }
        if figure.hasPrefix("ratio") { return "ratio" }
        return "count"
    }

    /// The commit of the current directory's working tree, as records name it, or `unknown` outside git.
    static func currentCommit() -> String {
        guard let sha = git(["rev-parse", "--short", "HEAD"]), !sha.isEmpty,
            let changes = git(["status", "--porcelain", "--untracked-files=no"])
        else { return "unknown" }
        return sha + (changes.isEmpty ? "" : "-dirty")
    }

    private static func git(_ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func string(_ value: String) -> String { JSONValue.string(value).canonicalText }

    /// Four decimals at most; whole numbers without a fraction.
    private static func number(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        let rounded = (value * 10_000).rounded() / 10_000
        if rounded == rounded.rounded(), abs(rounded) < 1e15 { return String(Int64(rounded)) }
        return String(rounded)
    }
}
