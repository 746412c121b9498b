import CaravanCore
import CaravanSQLite
import CaravanServer
import CaravanStorage
import CaravanTestSupport
import CaravanVault
import Crypto
import Foundation
import Testing

@Suite("Master key rotation")
struct KeyRotationTests {
    @Test("Secrets sealed under an old key open while it is a previous key, and are re-sealed under the new one")
    func resealsUnderTheNewKey() async throws {
        try await withTemporaryDirectory { directory in
            let database = try SQLiteDatabase(directory: directory, logger: TestLogging.quiet)
            _ = try await database.migrate(Schema.migrations)
            let oldKey = SymmetricKey(size: .bits256)
            let newKey = SymmetricKey(size: .bits256)
            let before = SecretStore(database: database, box: SecretBox(keyring: try MasterKeyring(current: oldKey)))
            for index in 0..<250 {
                _ = try await before.put(orgID: Organization.defaultID, name: "s\(index)", value: "value \(index)")
            }

            let rotatedBox = SecretBox(keyring: try MasterKeyring(current: newKey, previous: [oldKey]))
            let rotation = KeyRotation(
                database: database,
                box: rotatedBox,
                columns: [.secrets],
                logger: TestLogging.quiet,
                ready: {}
            )
            #expect(try await rotation.resealAll(batchSize: 100) == 250)
            #expect(try await rotation.resealAll() == 0, "nothing is left under the old key")

            // The old key is no longer needed: everything opens under the new key alone.
            let after = SecretStore(database: database, box: SecretBox(keyring: try MasterKeyring(current: newKey)))
            let values = try await after.resolve(orgID: Organization.defaultID, names: ["s0", "s249"])
            #expect(values == ["s0": "value 0", "s249": "value 249"])
            // A sealed value moved to another row does not open.
            try await database.withTransaction { executor in
                try await executor.execute(
                    "UPDATE secrets SET sealed = (SELECT sealed FROM secrets WHERE name = 's1') WHERE name = 's2'",
                    []
                )
            }
            await #expect(throws: CaravanError.self) {
                _ = try await after.resolve(orgID: Organization.defaultID, names: ["s2"])
            }
        }
    }
}
