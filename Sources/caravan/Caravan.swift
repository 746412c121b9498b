import ArgumentParser
import CaravanServer

/// The `caravan` command: parses options and hands over to the application.
@main
struct Caravan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caravan",
        abstract: "Durable workflows and AI agents, self-hosted: one binary, SQLite or PostgreSQL.",
        version: caravanVersion,
        subcommands: [Serve.self, Migrate.self, Audit.self, Version.self]
    )
}

/// `caravan version`.
struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version and exit.")

    func run() {
        print("caravan \(caravanVersion)")
    }
}
