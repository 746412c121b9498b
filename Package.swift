// swift-tools-version: 6.2
import PackageDescription

/// One set of settings for every target: Swift 6 language mode with strict concurrency.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "caravan",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "caravan", targets: ["caravan"])
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: ["JSON", "YAML"]),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk.git", from: "0.12.1"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/swiftwasm/WasmKit.git", .upToNextMinor(from: "0.4.2")),
        .package(url: "https://github.com/weichsel/ZIPFoundation.git", from: "0.9.20"),
    ],
    targets: [
        // Domain types: ids, durations, JSON values, errors. No I/O, no HTTP, no SQL.
        .target(
            name: "CaravanCore",
            dependencies: [],
            swiftSettings: swiftSettings
        ),
        // Workflow definitions: parsing, validation, expressions, interpolation, cron.
        .target(
            name: "CaravanWorkflow",
            dependencies: [
                "CaravanCore",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        // The durable execution engine: runs, steps, leases, group commit, timers, schedules.
        .target(
            name: "CaravanEngine",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                "CaravanCore",
                "CaravanWorkflow",
                "CaravanStorage",
                "CaravanAudit",
                "CaravanOutbound",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The storage contract: a SQL database with transactions, migrations, typed errors.
        .target(
            name: "CaravanStorage",
            dependencies: [
                "CaravanCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Secrets at rest: the master key, AES-256-GCM sealing, the secret store and its re-encryption on rotation.
        .target(
            name: "CaravanVault",
            dependencies: [
                "CaravanCore",
                "CaravanStorage",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The tamper-evident audit log: hash-chained entries, group-committed, and their verification.
        .target(
            name: "CaravanAudit",
            dependencies: [
                "CaravanCore",
                "CaravanStorage",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Accounts and tenancy: users, passwords, sessions, MFA, organizations, roles, API keys, rate limits.
        .target(
            name: "CaravanIdentity",
            dependencies: [
                "CaravanCore",
                "CaravanStorage",
                "CaravanVault",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "HummingbirdOTP", package: "hummingbird-auth"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Outbound requests that users or models can steer: the egress policy and the client that enforces it.
        .target(
            name: "CaravanOutbound",
            dependencies: [
                .product(name: "NIOHTTPCompression", package: "swift-nio-extras"),
                "CaravanCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The LLM gateway's domain and wire formats: one message model, OpenAI and Anthropic clients, routing
        // with fallbacks, retries and circuit breakers, prices.
        .target(
            name: "CaravanModels",
            dependencies: [
                "CaravanCore",
                "CaravanOutbound",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Tools for agents: MCP servers over stdio and streamable HTTP.
        .target(
            name: "CaravanTools",
            dependencies: [
                .product(name: "NIOHTTP1", package: "swift-nio"),
                "CaravanCore",
                "CaravanModels",
                "CaravanOutbound",
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // WebAssembly modules: the sandbox (fuel, memory, stack and time limits; host functions), the module store,
        // the `wasm` step kind.
        .target(
            name: "CaravanWasm",
            dependencies: [
                "CaravanCore",
                "CaravanWorkflow",
                "CaravanEngine",
                "CaravanStorage",
                "CaravanOutbound",
                .product(name: "WasmKit", package: "WasmKit"),
                .product(name: "WAT", package: "WasmKit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Agents: definitions, the durable agent loop, llm and agent steps, threads, metering and budgets.
        .target(
            name: "CaravanAgents",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                "CaravanCore",
                "CaravanWorkflow",
                "CaravanEngine",
                "CaravanAudit",
                "CaravanStorage",
                "CaravanModels",
                "CaravanTools",
                "CaravanOutbound",
                "CaravanWasm",
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        // The catalog: listings of agents, workflows and modules that other organizations install, the
        // double-entry ledger that meters their uses, reputation and ratings.
        .target(
            name: "CaravanCatalog",
            dependencies: [
                "CaravanCore",
                "CaravanStorage",
                "CaravanEngine",
                "CaravanWorkflow",
                "CaravanAgents",
                "CaravanWasm",
                "CaravanVault",
                "CaravanTools",
                "CaravanModels",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Knowledge: collections, documents extracted, chunked and embedded, and hybrid search over them.
        .target(
            name: "CaravanKnowledge",
            dependencies: [
                "CaravanCore",
                "CaravanStorage",
                "CaravanEngine",
                "CaravanWorkflow",
                "CaravanAgents",
                "CaravanModels",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ],
            swiftSettings: swiftSettings
        ),
        // The embedded SQLite implementation of the storage contract.
        .target(
            name: "CaravanSQLite",
            dependencies: [
                "CaravanCore",
                "CaravanStorage",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The PostgreSQL implementation of the storage contract.
        .target(
            name: "CaravanPostgres",
            dependencies: [
                "CaravanCore",
                .product(name: "NIOCore", package: "swift-nio"),
                "CaravanStorage",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Notifications: Slack-compatible and generic JSON webhooks, email over SMTP, and the `notify` step kind.
        .target(
            name: "CaravanNotify",
            dependencies: [
                "CaravanCore",
                "CaravanWorkflow",
                "CaravanEngine",
                "CaravanStorage",
                "CaravanOutbound",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        // Inbound triggers: public hook URLs that verify, filter, batch or route deliveries into runs.
        .target(
            name: "CaravanTriggers",
            dependencies: [
                "CaravanCore",
                "CaravanWorkflow",
                "CaravanEngine",
                "CaravanStorage",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Outbound webhooks: subscriptions to run events, delivered signed, in order per run, from a durable outbox.
        // Slack and email deliveries go through a messenger the server hands in (notifications' formats and SMTP).
        .target(
            name: "CaravanWebhooks",
            dependencies: [
                "CaravanCore",
                "CaravanWorkflow",
                "CaravanEngine",
                "CaravanVault",
                "CaravanStorage",
                "CaravanAudit",
                "CaravanOutbound",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The web console: server-rendered pages over the public API, called in process with the user's session.
        .target(
            name: "CaravanConsole",
            dependencies: [
                "CaravanCore",
                "CaravanWorkflow",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        // The HTTP application: middleware, routes, problem+json errors, OpenAPI document.
        .target(
            name: "CaravanServer",
            dependencies: [
                "CaravanCore",
                "CaravanIdentity",
                "CaravanVault",
                "CaravanAudit",
                "CaravanWorkflow",
                "CaravanEngine",
                "CaravanStorage",
                "CaravanSQLite",
                "CaravanPostgres",
                "CaravanOutbound",
                "CaravanModels",
                "CaravanTools",
                "CaravanAgents",
                "CaravanWasm",
                "CaravanCatalog",
                "CaravanKnowledge",
                "CaravanConsole",
                "CaravanNotify",
                "CaravanTriggers",
                "CaravanWebhooks",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The `caravan` command: parses options and calls `buildApplication`.
        .executableTarget(
            name: "caravan",
            dependencies: [
                "CaravanCore",
                "CaravanEngine",
                "CaravanStorage",
                "CaravanVault",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                "CaravanServer",
                "CaravanAudit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The benchmark of docs/benchmarks.md: W1 throughput, W2 latency, W3 crash recovery, against the binary.
        .executableTarget(
            name: "caravan-bench",
            dependencies: [
                "CaravanCore",
                "CaravanHarness",
                "CaravanEngine",
                "CaravanStorage",
                "CaravanSQLite",
                "CaravanPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The tools the fake MCP servers of the tests serve.
        .target(
            name: "CaravanMCPFixtureTools",
            dependencies: [
                .product(name: "MCP", package: "swift-sdk")
            ],
            path: "Tests/Fixtures/MCPFixtureTools",
            swiftSettings: swiftSettings
        ),
        // An MCP server over stdio with a few tools, for the tests of MCP tools.
        .executableTarget(
            name: "caravan-mcp-fixture",
            dependencies: [
                "CaravanMCPFixtureTools",
                .product(name: "MCP", package: "swift-sdk"),
            ],
            path: "Tests/Fixtures/MCPFixture",
            swiftSettings: swiftSettings
        ),
        // What drives a real `caravan` from outside, for tests and benchmarks alike: the process, throwaway databases
        // and directories, a loopback HTTP endpoint, fake model providers. No test framework.
        .target(
            name: "CaravanHarness",
            dependencies: [
                "CaravanCore",
                "CaravanStorage",
                "CaravanSQLite",
                "CaravanPostgres",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Test support: the application built in-process, fake MCP servers, raw HTTP, and the harness re-exported.
        .target(
            name: "CaravanTestSupport",
            dependencies: [
                "CaravanEngine",
                .product(name: "NIOCore", package: "swift-nio"),
                "CaravanCore",
                "CaravanHarness",
                "CaravanServer",
                "CaravanStorage",
                "CaravanSQLite",
                "CaravanPostgres",
                "CaravanModels",
                "CaravanMCPFixtureTools",
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdOTP", package: "hummingbird-auth"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CaravanCoreTests",
            dependencies: ["CaravanCore", "CaravanTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CaravanWorkflowTests",
            dependencies: ["CaravanWorkflow", "CaravanCore", "CaravanTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CaravanStorageTests",
            dependencies: ["CaravanCore", "CaravanStorage", "CaravanSQLite", "CaravanPostgres", "CaravanTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CaravanEngineTests",
            dependencies: [
                "CaravanCore",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                "CaravanEngine", "CaravanWorkflow", "CaravanServer", "CaravanTestSupport", "CaravanStorage",
                "CaravanSQLite", "CaravanPostgres",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CaravanIdentityTests",
            dependencies: [
                "CaravanCore", "CaravanIdentity", "CaravanVault", "CaravanAudit", "CaravanStorage",
                "CaravanTestSupport",
                "CaravanServer", "CaravanSQLite", "CaravanPostgres",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdOTP", package: "hummingbird-auth"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CaravanModelsTests",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                "CaravanCore", "CaravanModels", "CaravanOutbound", "CaravanTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CaravanToolsTests",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                "CaravanCore", "CaravanTools", "CaravanModels", "CaravanOutbound", "CaravanTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CaravanAgentsTests",
            dependencies: [
                .product(name: "HTTPTypes", package: "swift-http-types"),
                "CaravanCore", "CaravanAgents", "CaravanModels", "CaravanEngine", "CaravanServer", "CaravanTestSupport",
                "CaravanStorage", "CaravanSQLite", "CaravanPostgres", "CaravanCatalog", "CaravanKnowledge",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CaravanServerTests",
            dependencies: [
                "CaravanCore",
                "CaravanEngine",
                "CaravanPostgres",
                "CaravanStorage",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                "CaravanServer", "CaravanTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CaravanEventsTests",
            dependencies: [
                "CaravanCore", "CaravanEngine", "CaravanStorage", "CaravanServer", "CaravanTestSupport",
                "CaravanNotify", "CaravanTriggers", "CaravanWebhooks",
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
