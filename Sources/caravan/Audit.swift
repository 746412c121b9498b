import ArgumentParser
import CaravanAudit
import CaravanServer
import CaravanVault
import Configuration
import Foundation
import Logging

/// `caravan audit …`: the audit log from the command line.
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Work with the tamper-evident audit log.",
        subcommands: [Verify.self]
    )

    /// `caravan audit verify`: recomputes every chain, checks each against its signed head (and a saved heads file),
    /// and names the first entry where one breaks.
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every organization's audit chain; exit 1 and name the first broken entry if one is.",
            discussion: """
                Chains are linked with a key derived from the master key, which this command needs: --master-key, \
                CARAVAN_MASTER_KEY, or <data>/master.key. Pass --heads with a copy of <data>/audit-heads.json (or of \
                an "Audit chain heads" log line) kept elsewhere to also detect entries deleted from the end of a \
                chain, or whole chains deleted, since that copy was taken.
                """
        )

        @OptionGroup var options: DatabaseOptions

        @Option(help: "The master key (base64), when not in <data>/master.key. [env: CARAVAN_MASTER_KEY]")
        var masterKey: String?

        @Option(
            help:
                "Earlier master keys (comma-separated base64), for entries linked before a rotation. [env: CARAVAN_PREVIOUS_MASTER_KEYS]"
        )
        var previousMasterKeys: String?

        @Option(help: "A saved heads export (audit-heads.json, or a file holding the logged line) to compare with.")
        var heads: String?

        func run() async throws {
            let reader = try await options.reader()
            var configuration = ServerConfiguration()
            try options.apply(to: &configuration, from: reader)
            let logger = try options.bootstrapLogging(level: .error, reader: reader)
            let keys = try loadKeys(
                configured: masterKey ?? reader.string(forKey: "master_key", isSecret: true),
                previous: previousMasterKeys ?? reader.string(forKey: "previous_master_keys", isSecret: true),
                dataDirectory: configuration.dataDirectory
            )
            var saved: AuditHeadsExport?
            if let heads {
                guard let text = try? String(contentsOfFile: heads, encoding: .utf8) else {
                    throw ValidationError("Cannot read the heads file \(heads).")
                }
                do { saved = try AuditHeadsExport.parse(text, keys: keys) } catch {
                    print("BROKEN: \(heads): \(error)")
                    throw ExitCode.failure
                }
            }
            let savedHeads = saved
            let result = try await withDatabase(configuration, logger: logger) { database in
                try await AuditVerifier(database: database, keys: keys).verify(saved: savedHeads)
            }
            if let broken = result.firstBreak {
                let chain = broken.chain.isEmpty ? "entries of no organization" : "organization \(broken.chain)"
                if let id = broken.entryID {
                    print("BROKEN: audit entry \(id) (\(chain), position \(broken.seq)): \(broken.reason).")
                } else {
                    print("BROKEN: \(chain), from position \(broken.seq): \(broken.reason).")
                }
                print("\(result.checked) entries before it verified.")
                throw ExitCode.failure
            }
            print("OK: \(result.checked) audit entries verified; every chain is intact.")
            if !result.unsignedChains.isEmpty {
                print(
                    "Note: \(result.unsignedChains.count) chain(s) written before chains were keyed have no signed head yet; their tail is checked once they are appended to."
                )
            }
        }

        /// The audit keys of the configured master keys, or of `<data>/master.key`; never generates a key.
        func loadKeys(configured: String?, previous: String?, dataDirectory: String) throws -> AuditKeys {
            let earlier = try (previous ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }.enumerated().map { index, text in
                    try MasterKeyring.decode(text, name: "previous master key \(index + 1)")
                }
            if let configured, !configured.isEmpty {
                return AuditKeys(
                    current: try MasterKeyring.decode(configured, name: "The master key"),
                    previous: earlier
                )
            }
            let path = URL(fileURLWithPath: dataDirectory).appendingPathComponent("master.key").path
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError(
                    "Verifying the audit log needs the master key: pass --master-key, set CARAVAN_MASTER_KEY, or use --data with the directory holding master.key."
                )
            }
            return AuditKeys(current: try MasterKeyring.decode(text, name: "The key in \(path)"), previous: earlier)
        }
    }
}
