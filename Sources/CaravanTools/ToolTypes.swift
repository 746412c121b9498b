public import CaravanCore

// A tool that could not be listed or called throws a `Failure`: a stable code, a message for people (and models), and whether trying
// again later may succeed.
//
// Codes:
// - `mcp_unavailable`: the server could not be started or reached, or it went away (exited, closed its output,
// ended the session, answered HTTP errors);
// - `mcp_protocol_error`: it answered something that is not MCP;
// - `mcp_error`: it answered a JSON-RPC error (unknown tool, invalid arguments, …);
// - `tool_timeout`: no answer in time;
// - `tool_cancelled`: the caller's task was cancelled;
// - `invalid_arguments`: the arguments are not a JSON object;
// - `invalid_config`: the server configuration is unusable;
// - and the codes of `Failure` for MCP over HTTP: `egress_denied`, `dns_error`, `too_many_redirects`,
// `response_too_large`, `timeout`, `network_error`.

extension Failure {
    static func unavailable(_ message: String, retryable: Bool = true) -> Failure {
        Failure(code: "mcp_unavailable", message: message, retryable: retryable)
    }

    static func protocolError(_ message: String) -> Failure {
        Failure(code: "mcp_protocol_error", message: message, retryable: false)
    }
}

/// What a tool answered: its text content (text blocks joined by newlines, other blocks described briefly), whether
/// the tool reported an error, and its structured content when it gave one.
public struct ToolOutput: Sendable, Hashable {
    public var text: String
    public var isError: Bool
    public var structured: JSONValue?

    public init(text: String, isError: Bool, structured: JSONValue? = nil) {
        self.text = text
        self.isError = isError
        self.structured = structured
    }
}

/// How to reach one MCP server: exactly one of `command` (a process speaking MCP over stdio) and `url` (streamable
/// HTTP).
public struct MCPServerConfig: Sendable, Hashable, Codable {
    /// A name for logs and messages.
    public var name: String
    /// The program and its arguments, run without a shell; the program is looked up on `PATH` unless it contains
    /// a `/`.
    public var command: [String]?
    /// The MCP endpoint, `http://` or `https://`; it must pass the egress policy.
    public var url: String?
    /// Sent with every HTTP request (e.g. `Authorization`).
    public var headers: [String: String]
    /// Added to the child process's environment, which otherwise holds only `PATH` and `HOME`.
    public var env: [String: String]

    public init(
        name: String,
        command: [String]? = nil,
        url: String? = nil,
        headers: [String: String] = [:],
        env: [String: String] = [:]
    ) {
        self.name = name
        self.command = command
        self.url = url
        self.headers = headers
        self.env = env
    }

    private enum CodingKeys: String, CodingKey {
        case name, command, url, headers, env
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        command = try container.decodeIfPresent([String].self, forKey: .command)
        url = try container.decodeIfPresent(String.self, forKey: .url)
        headers = try container.decodeIfPresent([String: String].self, forKey: .headers) ?? [:]
        env = try container.decodeIfPresent([String: String].self, forKey: .env) ?? [:]
    }

    /// Problems with this configuration, empty when it is usable.
    public var problems: [String] {
        var problems: [String] = []
        switch (command, url) {
        case (nil, nil): problems.append("one of 'command' and 'url' is required")
        case (.some, .some): problems.append("'command' and 'url' exclude each other")
        case (.some(let command), nil) where command.first?.isEmpty ?? true:
            problems.append("'command' must name a program")
        default: break
        }
        for name in env.keys.sorted() where !Self.mayPassToChild(name) {
            problems.append("the environment variable '\(name)' may not be set (it could change what the program runs)")
        }
        return problems
    }

    /// Names of environment variables that change what a program loads or runs: the dynamic loader's, the shells'
    /// and the usual interpreters'. An agent may set other variables of its MCP server (API keys, options).
    static let forbiddenEnvironmentNames: Set<String> = [
        "PATH", "HOME", "SHELL", "IFS", "ENV", "BASH_ENV", "PS4", "PROMPT_COMMAND", "CDPATH", "GCONV_PATH",
        "GLIBC_TUNABLES",
        "LOCPATH", "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF", "TMPDIR", "NODE_OPTIONS", "NODE_PATH", "PYTHONPATH",
        "PYTHONHOME", "PYTHONSTARTUP", "PYTHONINSPECT", "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYLIB", "RUBYOPT",
        "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH", "GIT_SSH_COMMAND", "SSLKEYLOGFILE",
    ]
    static let forbiddenEnvironmentPrefixes = [
        "LD_", "DYLD_", "MALLOC_", "BASH_FUNC_", "GIT_CONFIG", "NPM_CONFIG_", "PIP_",
    ]

    /// Whether an agent may set `name` in its MCP server's environment: a plain name (`[A-Za-z_][A-Za-z0-9_]*`)
    /// that is not one of the forbidden ones.
    public static func mayPassToChild(_ name: String) -> Bool {
        guard let first = name.utf8.first, first == 95 || (first | 0x20 >= 97 && first | 0x20 <= 122),
            name.utf8.allSatisfy({ $0 == 95 || ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 122) })
        else { return false }
        let upper = name.uppercased()
        return !forbiddenEnvironmentNames.contains(upper)
            && !forbiddenEnvironmentPrefixes.contains { upper.hasPrefix($0) }
    }
}
