import CaravanServer
import CaravanStorage
import Testing

@Suite("Schema")
struct SchemaTests {
    @Test("The targets' migrations compose into versions 1…n, each table created once, in both dialects")
    func composed() {
        #expect(Schema.migrations.map(\.version) == Array(1...Schema.migrations.count))
        for dialect in [SQLDialect.sqlite, .postgres] {
            let created = Schema.migrations.flatMap { $0.statements(for: dialect) }.compactMap { statement in
                statement.split(whereSeparator: \.isWhitespace).dropFirst(2).first.flatMap {
                    statement.hasPrefix("CREATE TABLE") ? String($0) : nil
                }
            }
            #expect(Set(created).count == created.count, "\(dialect): \(created)")
            #expect(created.first == "organizations", "organizations come first: everything refers to them")
        }
    }

    @Test("Parts of one version apply in the order given, under one name")
    func compose() {
        let merged = Migration.compose([
            [
                Migration(version: 1, name: "a", statements: ["A1"]),
                Migration(version: 2, name: "b", statements: ["B"]),
            ],
            [Migration(version: 1, name: "c", sqlite: ["C-sqlite"], postgres: ["C-postgres"])],
        ])
        #expect(merged.map(\.version) == [1, 2])
        #expect(merged.first?.name == "a; c")
        #expect(merged.first?.statements(for: .sqlite) == ["A1", "C-sqlite"])
        #expect(merged.first?.statements(for: .postgres) == ["A1", "C-postgres"])
    }
}
