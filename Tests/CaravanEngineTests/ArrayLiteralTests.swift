import CaravanStorage
import CaravanTestSupport
import Testing

@testable import CaravanEngine

/// A PostgreSQL commit batch sends each column of its runs as one array literal; whatever a run holds must come
/// back from the array unchanged.
@Suite(
    "Array literals",
    .enabled(if: PostgresTestServer.isConfigured, "needs CARAVAN_TEST_POSTGRES_URL (scripts/test sets it)")
)
struct ArrayLiteralTests {
    @Test func anyTextAndNullsComeBackUnchanged() async throws {
        let texts: [SQLValue] = [
            .text(""), .text("NULL"), .text("null"), .text(#"{"a":"b \"q\" \\ c","d":[1,2]}"#), .text("a,b}{c"),
            .text(" spaced "), .text("tab\tnewline\nend"), .text("ünïcode ✓ 𝄞"), .null, .text(#"\"#), .text(#"""#),
        ]
        try await withTestDatabase(.postgres, migrations: []) { database in
            let rows = try await database.read { executor in
                try await executor.query(
                    "SELECT value, value IS NULL AS missing FROM unnest($1::TEXT[]) WITH ORDINALITY AS t(value, n) ORDER BY n",
                    [RunStore.arrayLiteral(texts)]
                )
            }
            #expect(rows.count == texts.count)
            for (row, text) in zip(rows, texts) {
                if case .text(let expected) = text {
                    #expect(try row.string("value") == expected)
                } else {
                    #expect(try row.bool("missing"))
                }
            }
            let numbers: [SQLValue] = [.int(0), .int(-1), .int(Int64.max), .null]
            let read = try await database.read { executor in
                try await executor.query(
                    "SELECT value FROM unnest($1::BIGINT[]) WITH ORDINALITY AS t(value, n) ORDER BY n",
                    [RunStore.arrayLiteral(numbers)]
                )
            }
            #expect(try read.map { try $0.optionalInt("value") } == [0, -1, Int64.max, nil])
        }
    }
}
