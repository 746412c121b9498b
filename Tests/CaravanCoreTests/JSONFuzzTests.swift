import CaravanCore
import CaravanTestSupport
import Foundation
import Testing

/// Fuzzing of `JSONValue(parsing:maxDepth:)`, the parser of every JSON body: mutated and generated texts must end
/// quickly, parsed (within the depth limit, and round-tripping through their canonical text) or refused with
/// `invalid_json`; generated values must come back from their canonical text.
///
/// - `CARAVAN_FUZZ_SECONDS`: how long each fuzz test runs (default: 1 s, and at most 20,000 inputs).
/// - `CARAVAN_FUZZ_SEED`: the seed, to replay a run (printed in every failure).
/// - `CARAVAN_FUZZ_TRACE`: a file path; each input is written there before it runs (after a crash it holds it).
@Suite("JSON fuzzing")
struct JSONFuzzTests {
    static let seeds: [String] = [
        #"{"a":1,"b":[true,false,null],"c":{"d":"e\u00e9\n\"\\/"},"f":-0.5e-3,"g":9223372036854775807}"#,
        #"[1,2.5,-3,1e3,1E-2,"x",{"":[]},[[]],{}]"#,
        #""just a string with \ud83d\ude00 and \u0000""#,
        "  \n\t 42 \r\n", "-9223372036854775808", "18446744073709551616", "1.7976931348623157e308", "5e-324", "0.1",
        #"{"dup":1,"dup":2}"#, "[", "{\"a\":}", "[1,]", "nul", "\"\\ud800\"", "1e15", "-0", "1.0", "123456789012345678",
    ]
    static let tokens: [String] = [
        "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "00e9", "\\ud800", "\\udc00", "null", "true", "false", "0",
        "-",
        "1e", "+", ".", "E308", "9999999999999999999999", " ", "\n", "\u{0}", "é", "💥", "\"k\":", "NaN", "Infinity",
        "\u{FEFF}", "/*", "*/",
    ]

    @Test("Mutated JSON: parsed within the depth limit and round-tripped, or refused with invalid_json")
    func mutatedText() async {
        var fuzzer = JSONFuzzer(seeds: Self.seeds, tokens: Self.tokens)
        await fuzzer.run { fuzzer, bytes in
            let maxDepth = [1, 3, 16, 128][bytes.count % 4]
            let value: JSONValue
            do throws(CaravanError) {
                value = try JSONValue(parsing: bytes, maxDepth: maxDepth)
            } catch {
                if error.code != .invalidJSON { fuzzer.fail("refused with \(error.code)", input: bytes) }
                if error.detail.isEmpty { fuzzer.fail("refused with no detail", input: bytes) }
                return
            }
            if JSONFuzzer.depth(of: value) > maxDepth {
                fuzzer.fail(
                    "a value \(JSONFuzzer.depth(of: value)) deep parsed under maxDepth \(maxDepth)",
                    input: bytes
                )
            }
            fuzzer.checkRoundTrip(value, input: bytes)
        }
    }

    @Test("Generated values come back from their canonical text")
    func generatedValues() async {
        var fuzzer = JSONFuzzer(seeds: ["null"], tokens: ["0"])
        await fuzzer.run { fuzzer, _ in
            let value = fuzzer.randomValue(depth: 0)
            let text = value.canonicalBytes
            fuzzer.checkRoundTrip(value, input: text)
            // Nesting is refused past maxDepth and accepted up to it.
            let depth = JSONFuzzer.depth(of: value)
            if depth > 0 {
                if (try? JSONValue(parsing: text, maxDepth: depth)) == nil {
                    fuzzer.fail("refused at its own depth \(depth)", input: text)
                }
                if (try? JSONValue(parsing: text, maxDepth: depth - 1)) != nil {
                    fuzzer.fail("accepted under depth \(depth - 1)", input: text)
                }
            }
        }
    }

    /// The parser against an independent one (Foundation's `JSONDecoder`, which parsed every body before it):
    /// on mutated texts both accept the same texts, with the same values. Foundation accepts more in two places,
    /// which the parser refuses on purpose (see `foundationIsLenient`).
    @Test("Mutated JSON: the parser agrees with Foundation's JSONDecoder")
    func agreesWithFoundation() async {
        var fuzzer = JSONFuzzer(seeds: Self.seeds, tokens: Self.tokens)
        await fuzzer.run { fuzzer, bytes in
            let ours = try? JSONValue(parsing: bytes, maxDepth: 512)
            let theirs = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
            switch (ours, theirs) {
            case (let ours?, let theirs?):
                if ours != theirs, !JSONFuzzer.sameBeyondDoublePrecision(ours, theirs) {
                    fuzzer.fail("parsed as \(ours.canonicalText), Foundation: \(theirs.canonicalText)", input: bytes)
                }
            case (nil, _?):
                if !JSONFuzzer.foundationIsLenient(bytes) {
                    fuzzer.fail("refused, but Foundation parsed it", input: bytes)
                }
            case (_?, nil):
                fuzzer.fail("parsed, but Foundation refused it", input: bytes)
            case (nil, nil):
                break
            }
        }
    }

    /// Found by this fuzzer's generated values when whole doubles were allowed: `.double(1e15)` is written
    /// `1000000000000000.0` (and `1e16` as `1e+16`), which parses as `.int`, written `1000000000000000`. A definition
    /// written in YAML with such a float re-parses from its stored source to another source text.
    @Test("Canonical text is a fixed point for whole-number doubles too")
    func wholeDoubles() {
        for value: Double in [1e15, 1e16, 123_456_789_012_345_678, -1e15, 4e18, 1e19, -3e20] {
            let text = JSONValue.double(value).canonicalText
            let again = try? JSONValue(parsing: Array(text.utf8))
            #expect(again?.canonicalText == text, "\(value): \(text) → \(String(describing: again?.canonicalText))")
        }
    }
}

/// A small mutation fuzzer for JSON text, time- and count-bounded, seeded.
struct JSONFuzzer {
    let seeds: [[UInt8]]
    let tokens: [[UInt8]]
    let seed: UInt64
    let seconds: Double
    let maxCases: Int
    let tracePath: String?
    var rng: SplitMix64
    var failures = 0
    var cases = 0

    init(seeds: [String], tokens: [String]) {
        let environment = ProcessInfo.processInfo.environment
        self.seeds = seeds.map { Array($0.utf8) }
        self.tokens = tokens.map { Array($0.utf8) }
        seed = environment["CARAVAN_FUZZ_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        let configured = environment["CARAVAN_FUZZ_SECONDS"].flatMap(Double.init)
        seconds = configured ?? 1
        maxCases = configured == nil ? 20_000 : .max
        tracePath = environment["CARAVAN_FUZZ_TRACE"]
        rng = SplitMix64(seed: seed)
    }

    /// Yields its thread every few inputs, so that the tests beside it are not starved (see `Fuzzer.run`).
    mutating func run(_ body: (inout JSONFuzzer, [UInt8]) -> Void) async {
        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(Int(seconds * 1_000))
        while cases < maxCases && clock.now < deadline && failures < 5 {
            let input = cases < seeds.count ? seeds[cases] : next()
            if let tracePath { FileManager.default.createFile(atPath: tracePath, contents: Data(input)) }
            let started = clock.now
            body(&self, input)
            if clock.now - started > .seconds(1) { fail("one input took \(clock.now - started)", input: input) }
            cases += 1
            if cases % 16 == 0 { await Task.yield() }
        }
        print("fuzz json: \(cases) inputs, seed \(seed)")
    }

    mutating func next() -> [UInt8] {
        if Int.random(in: 0..<5, using: &rng) == 0 {
            // tokens is not empty
            return (0..<Int.random(in: 1...40, using: &rng)).flatMap { _ in tokens.randomElement(using: &rng)! }
        }
        var bytes = seeds.randomElement(using: &rng)!  // seeds is not empty
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            let position = Int.random(in: 0...bytes.count, using: &rng)
            switch Int.random(in: 0..<7, using: &rng) {
            case 0 where !bytes.isEmpty:
                bytes[min(position, bytes.count - 1)] ^= 1 << UInt8.random(in: 0...7, using: &rng)
            case 1:
                bytes.insert(contentsOf: tokens.randomElement(using: &rng)!, at: position)
            case 2 where !bytes.isEmpty:
                bytes.removeSubrange(
                    min(position, bytes.count - 1)..<min(bytes.count, position + Int.random(in: 1...8, using: &rng))
                )
            case 3:
                let other = seeds.randomElement(using: &rng)!
                bytes = Array(bytes[..<position]) + other[Int.random(in: 0...other.count, using: &rng)...]
            case 4:
                let token = tokens.randomElement(using: &rng)!
                bytes.insert(
                    contentsOf: Array(repeating: token, count: Int.random(in: 10...300, using: &rng)).joined(),
                    at: position
                )
            case 5:
                bytes = Array(bytes[..<position])
            default:
                bytes.insert(UInt8.random(in: 0...255, using: &rng), at: position)
            }
        }
        return bytes
    }

    /// A random value: any integer, finite doubles that are not whole numbers, strings with escapes and non-ASCII.
    mutating func randomValue(depth: Int) -> JSONValue {
        switch Int.random(in: 0..<(depth > 6 ? 5 : 7), using: &rng) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2:
            return .int(
                Bool.random(using: &rng)
                    ? Int64.random(in: .min ... .max, using: &rng) : Int64.random(in: -1_000...1_000, using: &rng)
            )
        case 3:
            let double = Double(bitPattern: UInt64.random(in: 0...UInt64.max, using: &rng))
            return double.isFinite && double != double.rounded() ? .double(double) : .double(0.5)
        case 4:
            let alphabet: [Character] = [
                "a", "\"", "\\", "/", "\n", "\t", "\u{0}", "\u{1F}", "\u{7F}", "é", "💥", "\u{FEFF}", "\u{2028}", " ",
            ]
            return .string(
                String((0..<Int.random(in: 0...12, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            )
        case 5:
            return .array((0..<Int.random(in: 0...4, using: &rng)).map { _ in randomValue(depth: depth + 1) })
        default:
            var object: [String: JSONValue] = [:]
            for index in 0..<Int.random(in: 0...4, using: &rng) {
                object[index % 2 == 0 ? "k\(index)" : "é\"\\\(index)"] = randomValue(depth: depth + 1)
            }
            return .object(object)
        }
    }

    static func depth(of value: JSONValue) -> Int {
        switch value {
        case .array(let items): 1 + (items.map(depth(of:)).max() ?? 0)
        case .object(let object): 1 + (object.values.map(depth(of:)).max() ?? 0)
        default: 0
        }
    }

    /// `parse(print(x)) == x`, and the canonical text is a fixed point.
    mutating func checkRoundTrip(_ value: JSONValue, input: [UInt8]) {
        let text = value.canonicalText
        do throws(CaravanError) {
            let again = try JSONValue(parsing: Array(text.utf8), maxDepth: 1_000)
            if again != value, !JSONFuzzer.sameUpToWholeDoubles(again, value) {
                fail("parse(print(x)) != x: \(text) → \(again.canonicalText)", input: input)
            }
            // Whole doubles come back as integers (`1.0` is written `1`), but the text stays the same.
            if again.canonicalText != text {
                fail("the canonical text changed on a round trip: \(text) → \(again.canonicalText)", input: input)
            }
        } catch {
            fail("the canonical text does not parse: \(error)\n\(text)", input: input)
        }
    }

    /// Whether two values are equal but for numbers that a double cannot hold exactly (past 2^53, or with a
    /// fraction), which the two parsers round differently: `999999999999999991.0` is `1e18` as a double, and
    /// Foundation's `999999999999999991`.
    static func sameBeyondDoublePrecision(_ left: JSONValue, _ right: JSONValue) -> Bool {
        func number(_ value: JSONValue) -> Double? {
            switch value {
            case .int(let integer): Double(integer)
            case .double(let double): double
            default: nil
            }
        }
        switch (left, right) {
        case (.array(let a), .array(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { sameBeyondDoublePrecision($0, $1) }
        case (.object(let a), .object(let b)):
            return a.keys == b.keys
                && a.allSatisfy { key, value in b[key].map { sameBeyondDoublePrecision(value, $0) } ?? false }
        default:
            guard let a = number(left), let b = number(right) else { return left == right }
            return a == b || abs(a - b) <= max(abs(a), abs(b)) * 1e-15
        }
    }

    /// Whether the text holds what Foundation's decoder accepts and the parser refuses on purpose: a byte-order
    /// mark, a `\\u` escape (of a lone surrogate), a NUL byte (where Foundation stops reading), a repeated key's
    /// broken value, or a comma before a closing bracket.
    static func foundationIsLenient(_ bytes: [UInt8]) -> Bool {
        let text = String(decoding: bytes, as: UTF8.self)
        if text.contains("\u{FEFF}") || text.contains("\\u") || bytes.contains(0) { return true }
        // The seeds' repeated key: Foundation does not read a repeated key's later values, however broken.
        if text.components(separatedBy: #""dup""#).count > 2 { return true }
        let significant = bytes.filter { ![0x20, 0x0A, 0x0D, 0x09].contains($0) }
        return zip(significant, significant.dropFirst()).contains {
            $0 == UInt8(ascii: ",") && ($1 == UInt8(ascii: "]") || $1 == UInt8(ascii: "}"))
        }
    }

    /// Whether two values differ only where a whole-number double became an integer (`1.0` is written `1`).
    static func sameUpToWholeDoubles(_ left: JSONValue, _ right: JSONValue) -> Bool {
        switch (left, right) {
        case (.int(let integer), .double(let double)), (.double(let double), .int(let integer)):
            Double(integer) == double
        case (.array(let a), .array(let b)): a.count == b.count && zip(a, b).allSatisfy { sameUpToWholeDoubles($0, $1) }
        case (.object(let a), .object(let b)):
            a.keys == b.keys && a.allSatisfy { key, value in b[key].map { sameUpToWholeDoubles(value, $0) } ?? false }
        default: left == right
        }
    }

    mutating func fail(_ message: String, input: [UInt8]) {
        failures += 1
        Issue.record(
            "json: \(message)\ninput (\(input.count) bytes): \(String(decoding: input, as: UTF8.self).debugDescription)\nCARAVAN_FUZZ_SEED=\(seed)"
        )
    }
}
