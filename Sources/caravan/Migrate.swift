import ArgumentParser
import CaravanServer
import CaravanStorage
import Foundation
import Logging
import ServiceLifecycle

/// `caravan migrate`: applies pending database migrations and exits.
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending database migrations and exit (serve also does this on start)."
    )

    @OptionGroup var options: DatabaseOptions

    func run() async throws {
        let reader = try await options.reader()
        var configuration = ServerConfiguration()
        try options.apply(to: &configuration, from: reader)
        let logger = try options.bootstrapLogging(level: configuration.logLevel, reader: reader)
        do {
            let applied = try await withDatabase(configuration, logger: logger) { database in
                try await database.migrate(Schema.migrations)
            }
            print(applied.isEmpty ? "The schema is up to date." : "Applied migrations \(applied).")
        } catch let error as StorageError {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
    }
}
