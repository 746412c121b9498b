import CaravanCore
import Testing

@Suite("Core values")
struct CoreValueTests {
    @Test(
        "Durations parse the contract's forms",
        arguments: [
            ("500ms", Int64(500)), ("30s", 30_000), ("5m", 300_000), ("2h", 7_200_000), ("1d", 86_400_000),
            ("1h30m", 5_400_000),
        ]
    )
    func durations(text: String, milliseconds: Int64) {
        #expect(CaravanDuration(parsing: text)?.milliseconds == milliseconds)
        #expect(
            CaravanDuration(parsing: CaravanDuration(milliseconds: milliseconds).description)?.milliseconds
                == milliseconds
        )
    }

    @Test("Bad durations are refused", arguments: ["", "5", "m", "-5s", "5 s", "5y", "1.5s", "99999999999999999999d"])
    func badDurations(text: String) {
        #expect(CaravanDuration(parsing: text) == nil)
    }

    @Test("JSON round-trips with sorted keys and exact integers")
    func jsonRoundTrip() throws {
        let text = #"{"b":[1,2.5,"x\n\"y",null,true],"a":{"big":9007199254740993}}"#
        let value = try JSONValue(parsing: Array(text.utf8))
        #expect(value.canonicalText == #"{"a":{"big":9007199254740993},"b":[1,2.5,"x\n\"y",null,true]}"#)
        #expect(try JSONValue(parsing: value.canonicalBytes) == value)
    }

    @Test("Canonical text escapes what JSON requires, keeps other text whole, and sorts keys by Unicode order")
    func canonicalTextEscapes() throws {
        let value: JSONValue = [
            "é": "ünïcode ✓", "b": "tab\tnul\u{0}bell\u{7}\\end", "a": [:], "": [], "Z": .double(0.5),
        ]
        #expect(value.canonicalText == #"{"":[],"Z":0.5,"a":{},"b":"tab\tnul\u0000bell\u0007\\end","é":"ünïcode ✓"}"#)
        #expect(try JSONValue(parsing: value.canonicalBytes) == value)
        var text = "prefix "
        value.write(to: &text)
        #expect(text == "prefix " + value.canonicalText)
    }

    @Test("Times are written with their exact millisecond and read back to it")
    func rfc3339IsExact() {
        #expect(Clock.rfc3339(0) == "1970-01-01T00:00:00.000Z")
        #expect(Clock.rfc3339(1_733_435_401_123) == "2024-12-05T21:50:01.123Z")
        #expect(Clock.rfc3339(951_782_400_000) == "2000-02-29T00:00:00.000Z")
        #expect(Clock.rfc3339(-1) == "1969-12-31T23:59:59.999Z")
        #expect(Clock.rfc3339(253_402_300_799_999) == "9999-12-31T23:59:59.999Z")
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let milliseconds = Int64.random(in: 0...4_102_444_800_000, using: &generator)
            #expect(Clock.parseRFC3339(Clock.rfc3339(milliseconds)) == milliseconds)
        }
    }

    @Test("Malformed and deeply nested JSON is refused with invalid_json")
    func badJSON() {
        for text in [
            "{", #"{"a":}"#, "[1,]", "nul",
            String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000),
        ] {
            do {
                _ = try JSONValue(parsing: Array(text.utf8))
                Issue.record("accepted \(text.prefix(20))")
            } catch {
                #expect(error.code == .invalidJSON)
            }
        }
    }

    @Test("Identifiers carry their prefix and sort by creation time")
    func identifiers() {
        let earlier = Identifier.make("run", milliseconds: 1_000)
        let later = Identifier.make("run", milliseconds: 2_000)
        #expect(earlier.hasPrefix("run_"))
        #expect(earlier.count == 30)
        #expect(earlier < later)
        #expect(Identifier.make("run") != Identifier.make("run"))
    }
}
