import CaravanStorage
import Testing

@Suite("SQL placeholders")
struct SQLPlaceholdersTests {
    @Test func rewritesPlaceholdersOnly() {
        let sql = #"SELECT $1, $12, 'it''s $3', "col$4", name$5 FROM t WHERE a = $2"#
        #expect(
            SQLPlaceholders.rewrite(sql) { "?\($0)" }
                == #"SELECT ?1, ?12, 'it''s $3', "col$4", name$5 FROM t WHERE a = ?2"#
        )
        #expect(SQLWriteBatch.renumbered("VALUES ($1, $2)", by: 10) == "VALUES ($11, $12)")
        #expect(SQLWriteBatch.renumbered("x = $", by: 3) == "x = $", "a lone $ is left as it is")
        #expect(SQLWriteBatch.renumbered("VALUES ($1)", by: 0) == "VALUES ($1)")
    }
}
