import CaravanTestSupport
import Foundation
import Testing

@Suite("The caravan binary")
struct BinaryTests {
    @Test("serve becomes ready, and SIGTERM makes it exit 0")
    func serveAndTerminate() async throws {
        try await withTemporaryDirectory { directory in
            let server = try await CaravanProcess(arguments: ["serve", "--port", "0", "--data", directory])
            let ready = try await fetch("http://127.0.0.1:\(server.port)/readyz")
            #expect(ready.status == 200)
            #expect(ready.body.contains("ready"))
            server.send(signal: SIGTERM)
            let status = try await server.waitForExit()
            #expect(status == 0, "log: \(server.log)")
            // Every log line is one JSON object.
            for line in server.log.split(separator: "\n") {
                #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "not JSON: \(line)")
            }
        }
    }

    @Test(
        "SIGTERM with 100 open event streams: each gets a shutdown event and closes, and the process exits 0 within 10 s"
    )
    func shutdownEndsStreams() async throws {
        try await withTemporaryDirectory { directory in
            let server = try await CaravanProcess(arguments: ["serve", "--port", "0", "--data", directory])
            let base = "http://127.0.0.1:\(server.port)"
            let signup = try await fetch(
                base + "/v1/auth/signup",
                method: "POST",
                headers: [("Content-Type", "application/json")],
                body:
                    #"{"email": "ops@example.com", "password": "a long and unusual passphrase", "organization": "Ops"}"#
            )
            #expect(signup.status == 201, "\(signup.body)")
            let token = try #require(
                (try? JSONSerialization.jsonObject(with: Data(signup.body.utf8)) as? [String: Any])?["access_token"]
                    as? String
            )
            let put = try await fetch(
                base + "/v1/workflows/gate",
                method: "PUT",
                headers: [("Content-Type", "application/yaml"), ("Authorization", "Bearer \(token)")],
                body: "steps:\n  - {id: wait, approval: {}}\n"
            )
            #expect(put.status == 201, "\(put.body)")
            let run = try await fetch(
                base + "/v1/workflows/gate/runs",
                method: "POST",
                headers: [("Content-Type", "application/json"), ("Authorization", "Bearer \(token)")],
                body: #"{"input": {}}"#
            )
            let runID = try #require(
                (try? JSONSerialization.jsonObject(with: Data(run.body.utf8)) as? [String: Any])?["id"] as? String
            )
            // 99 organization streams and one run stream (a run that waits, so its stream stays open).
            var streams: [RawHTTPConnection] = []
            for index in 0..<100 {
                let connection = try RawHTTPConnection(port: server.port)
                let path = index == 0 ? "/v1/runs/\(runID)/events" : "/v1/events"
                connection.send(
                    "GET \(path) HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nAuthorization: Bearer \(token)\r\n\r\n"
                )
                streams.append(connection)
            }
            for connection in streams {
                let opening = try await connection.receive(timeout: .seconds(10), limit: 64)
                #expect(opening.text.contains("200 OK"), "\(opening.text)")
            }
            let stopping = ContinuousClock.now
            server.send(signal: SIGTERM)
            let status = try await server.waitForExit(timeout: .seconds(15))
            let took = ContinuousClock.now - stopping
            #expect(status == 0, "log: \(server.log.suffix(3000))")
            #expect(took < .seconds(10), "shutdown took \(took)")
            var ended = 0
            for connection in streams {
                let rest = try await connection.receive(timeout: .seconds(5))
                if rest.closed && rest.text.contains("event: shutdown") { ended += 1 }
            }
            #expect(ended == 100, "\(ended) of 100 streams got the shutdown event and closed")
            #expect(server.log.contains("Shutting down"))
            #expect(server.log.contains("Engine stopped"))
        }
    }

    @Test("A second serve on the same data directory refuses to start with a clear message")
    func secondProcessRefused() async throws {
        try await withTemporaryDirectory { directory in
            let first = try await CaravanProcess(arguments: ["serve", "--port", "0", "--data", directory])
            do {
                _ = try await CaravanProcess(arguments: ["serve", "--port", "0", "--data", directory])
                Issue.record("the second process started")
            } catch let error as CaravanProcessError {
                #expect(error.description.contains("Another caravan process"))
            }
            first.send(signal: SIGINT)
            let status = try await first.waitForExit()
            #expect(status == 0)
        }
    }

    @Test("Flags win over environment variables, which win over the config file")
    func configurationPrecedence() async throws {
        try await withTemporaryDirectory { directory in
            let file = directory + "/caravan.yaml"
            try "port: 1\ndata: \(directory)/from-file\nlog_level: debug\n".write(
                toFile: file,
                atomically: true,
                encoding: .utf8
            )
            // The file's port (1) is overridden by the environment (0 = any free port); the data directory comes
            // from the file; the flag's log level wins over the file's.
            let server = try await CaravanProcess(
                arguments: ["serve", "--config", file, "--log-level", "info"],
                environment: ["CARAVAN_PORT": "0"]
            )
            #expect(server.port != 1)
            #expect(FileManager.default.fileExists(atPath: directory + "/from-file/caravan.sqlite"))
            #expect(!server.log.contains(#""level":"debug""#))
            server.send(signal: SIGTERM)
            let status = try await server.waitForExit()
            #expect(status == 0)
        }
    }

    @Test("version and migrate work")
    func versionAndMigrate() async throws {
        try await withTemporaryDirectory { directory in
            let version = try run(["version"])
            #expect(version.status == 0)
            #expect(version.output.hasPrefix("caravan "))
            let first = try run(["migrate", "--data", directory])
            #expect(first.status == 0)
            #expect(first.output.contains("Applied migrations"))
            let second = try run(["migrate", "--data", directory])
            #expect(second.output.contains("up to date"))
        }
    }

    @Test("serve --help documents every option with its environment variable")
    func help() throws {
        let help = try run(["serve", "--help"])
        for variable in [
            "CARAVAN_HOST", "CARAVAN_PORT", "CARAVAN_DATA", "CARAVAN_DATABASE_URL", "CARAVAN_CONFIG",
            "CARAVAN_MAX_BODY_BYTES", "CARAVAN_REQUEST_READ_TIMEOUT", "CARAVAN_IDLE_TIMEOUT", "CARAVAN_LOG_LEVEL",
        ] {
            #expect(help.output.contains(variable), "missing \(variable)")
        }
    }

    private func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CaravanProcess.binaryPath)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["CARAVAN_LOG_FORMAT": "json"]) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
