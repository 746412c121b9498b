import ArgumentParser
import CaravanAudit
import CaravanServer
import Foundation

/// `caravan audit …`: the audit log from the command line.
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Work with the tamper-evident audit log.",
        subcommands: [Verify.self]
    )

    /// `caravan audit verify`: recomputes every chain and names the first entry where one breaks.
    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every organization's audit chain; exit 1 and name the first broken entry if one is."
        )

        @OptionGroup var options: DatabaseOptions

        func run() async throws {
            let reader = try await options.reader()
            var configuration = ServerConfiguration()
            try options.apply(to: &configuration, from: reader)
            let logger = try options.bootstrapLogging(level: .error, reader: reader)
            let result = try await withDatabase(configuration, logger: logger) { database in
                try await AuditVerifier(database: database).verify()
            }
            if let broken = result.firstBreak {
                let chain = broken.chain.isEmpty ? "entries of no organization" : "organization \(broken.chain)"
                print("BROKEN: audit entry \(broken.entryID) (\(chain), position \(broken.seq)): \(broken.reason).")
                print("\(result.checked) entries before it verified.")
                throw ExitCode.failure
            }
            print("OK: \(result.checked) audit entries verified; every chain is intact.")
        }
    }
}
