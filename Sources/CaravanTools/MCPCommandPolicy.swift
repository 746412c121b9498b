public import CaravanCore

/// Which programs MCP servers over stdio may run: an operator's decision, never an API user's.
///
/// A stdio MCP server is a child process of Caravan, running as Caravan's user beside its database and master key.
/// So no command runs unless the operator listed it, argument for argument (`--mcp-command-allow`); an agent may
/// name only such a command, and the child gets a minimal environment (see `MCPServerConfig.problems` for the
/// variables an agent may not set).
public struct MCPCommandPolicy: Sendable, Hashable {
    /// The exact argument vectors that may be run.
    public private(set) var allowed: Set<[String]>

    /// No command may run: the default.
    public static let none = MCPCommandPolicy(allowed: [])

    public init(allowed: Set<[String]>) {
        self.allowed = allowed
    }

    /// Parses the operator's list: commands separated by commas, each a program and its arguments separated by
    /// spaces (no shell, no quoting), e.g. `mcp-server-files /srv/docs,/opt/mcp/weather --units metric`.
    /// - Throws: `CaravanError` `validation_failed` for an entry that names no program.
    public init(parsing list: String) throws(MCPCommandPolicyError) {
        var allowed: Set<[String]> = []
        for entry in list.split(separator: ",") {
            let argv = entry.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if argv.isEmpty { continue }
            guard let program = argv.first, !program.hasPrefix("-") else {
                throw MCPCommandPolicyError(entry: String(entry))
            }
            allowed.insert(argv)
        }
        self.allowed = allowed
    }

    /// Whether `command` (a program and its arguments) may run.
    public func permits(_ command: [String]) -> Bool {
        allowed.contains(command)
    }

    /// The error an agent or a connection gets for a command the operator did not allow. Its message quotes
    /// nothing of the command, which is the caller's own input.
    public static func refusal(server: String) -> Failure {
        Failure(
            code: "mcp_command_not_allowed",
            message: "The MCP server '\(server)' runs a command the operator has not allowed (--mcp-command-allow).",
            retryable: false
        )
    }
}

/// An entry of `--mcp-command-allow` that names no program.
public struct MCPCommandPolicyError: Error, Sendable, CustomStringConvertible {
    public var entry: String
    public var description: String {
        "'\(entry)' is not a command: give a program and its arguments separated by spaces"
    }
}
