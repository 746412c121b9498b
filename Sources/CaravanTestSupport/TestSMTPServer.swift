import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// A real SMTP server on a free loopback port for tests of email delivery. It speaks `EHLO`/`HELO`, `STARTTLS`
/// (with a self-signed certificate for `localhost` and `127.0.0.1`, made once per process with the `openssl`
/// command line), implicit TLS, `AUTH PLAIN` and `AUTH LOGIN`, `MAIL FROM`, `RCPT TO`, `DATA` (dot-unstuffed),
/// `RSET`, `NOOP` and `QUIT`, and records every message with its envelope, whether it came over TLS and who
/// authenticated. Its behaviour is set by `Options`: what it offers, the one account it accepts, and replies to
/// force (a temporary `451` to the first messages, a `550` to a recipient).
public final class TestSMTPServer: Sendable {
    /// What the server offers and how it answers.
    public struct Options: Sendable {
        /// Whether `EHLO` lists `STARTTLS`.
        public var offersStartTLS = true
        /// TLS from the first byte (port 465 style) instead of plain TCP.
        public var implicitTLS = false
        /// The `AUTH` mechanisms `EHLO` lists once the connection is encrypted (or at once with `authInClear`).
        public var authMechanisms = ["PLAIN", "LOGIN"]
        /// Whether `AUTH` is offered before TLS.
        public var authInClear = false
        /// The one account accepted; `nil`: any credentials are refused, and none are required.
        public var account: (username: String, password: String)?
        /// How many messages are answered `451` (a temporary failure) at the end of `DATA` before one is accepted.
        public var temporaryFailures = 0
        /// A recipient answered `550` at `RCPT TO`.
        public var refusedRecipient: String?
        /// Accepts connections and never answers (not even the greeting), for timeouts.
        public var silent = false

        public init() {}
    }

    /// A message the server accepted (or refused at the end of `DATA`, with `accepted == false`).
    public struct Message: Sendable, Hashable {
        public var mailFrom: String
        public var recipients: [String]
        /// The message as received after `DATA`, dot-unstuffed, with CRLF line ends.
        public var data: String
        public var encrypted: Bool
        /// The username that authenticated, if any, with the password it gave and the mechanism.
        public var authenticatedAs: String?
        public var password: String?
        public var mechanism: String?
        public var accepted: Bool

        public init(
            mailFrom: String,
            recipients: [String],
            data: String,
            encrypted: Bool,
            authenticatedAs: String? = nil,
            password: String? = nil,
            mechanism: String? = nil,
            accepted: Bool = true
        ) {
            self.mailFrom = mailFrom
            self.recipients = recipients
            self.data = data
            self.encrypted = encrypted
            self.authenticatedAs = authenticatedAs
            self.password = password
            self.mechanism = mechanism
            self.accepted = accepted
        }

        /// The value of the first header `name` (unfolded), if present.
        public func header(_ name: String) -> String? {
            headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }

        /// Every header, unfolded, in order.
        public var headers: [(name: String, value: String)] {
            var result: [(name: String, value: String)] = []
            for line in data.components(separatedBy: "\r\n\r\n").first?.components(separatedBy: "\r\n") ?? [] {
                if line.hasPrefix(" ") || line.hasPrefix("\t"), let last = result.popLast() {
                    result.append((last.name, last.value + line))
                } else if let colon = line.firstIndex(of: ":") {
                    result.append(
                        (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
                    )
                }
            }
            return result
        }

        /// The body after the blank line that ends the headers.
        public var body: String {
            guard let range = data.range(of: "\r\n\r\n") else { return "" }
            return String(data[range.upperBound...])
        }

        public static func == (lhs: Message, rhs: Message) -> Bool { lhs.data == rhs.data }
        public func hash(into hasher: inout Hasher) { hasher.combine(data) }
    }

    struct State {
        var messages: [Message] = []
        var commands: [String] = []
        var connections = 0
        var temporaryFailuresLeft = 0
    }

    let options: Options
    private let state: Mutex<State>
    private let portBox = Mutex(0)

    /// The port it listens on.
    public var port: Int { portBox.withLock { $0 } }
    /// Every message received at the end of `DATA`, in order.
    public var messages: [Message] { state.withLock { $0.messages } }
    /// The messages accepted.
    public var accepted: [Message] { state.withLock { $0.messages.filter(\.accepted) } }
    /// Every command line received outside `DATA`, in order (`AUTH` arguments replaced by `***`).
    public var commands: [String] { state.withLock { $0.commands } }
    /// How many connections were made.
    public var connections: Int { state.withLock { $0.connections } }

    init(options: Options) {
        self.options = options
        self.state = Mutex(State(temporaryFailuresLeft: options.temporaryFailures))
    }

    /// Starts a server on `127.0.0.1`, runs `body`, and stops it.
    public static func with<T: Sendable>(
        _ options: Options = Options(),
        _ body: @Sendable (TestSMTPServer) async throws -> T
    ) async throws -> T {
        let server = TestSMTPServer(options: options)
        let tls = try NIOSSLContext(configuration: try await TestCertificate.shared.serverConfiguration())
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    server.state.withLock { $0.connections += 1 }
                    if options.implicitTLS {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        SMTPSessionHandler(server: server, tls: tls, encrypted: options.implicitTLS)
                    )
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        server.portBox.withLock { $0 = channel.localAddress?.port ?? 0 }
        do {
            let result = try await body(server)
            try? await channel.close()
            return result
        } catch {
            try? await channel.close()
            throw error
        }
    }

    func record(command: String) { state.withLock { $0.commands.append(command) } }

    /// Records a message; whether it is accepted.
    func record(_ message: Message) -> Bool {
        state.withLock { state in
            var message = message
            if state.temporaryFailuresLeft > 0 {
                state.temporaryFailuresLeft -= 1
                message.accepted = false
            }
            state.messages.append(message)
            return message.accepted
        }
    }
}

/// One SMTP conversation, on the connection's event loop.
private final class SMTPSessionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let server: TestSMTPServer
    let tls: NIOSSLContext
    var encrypted: Bool
    var buffer: [UInt8] = []
    var mailFrom: String?
    var recipients: [String] = []
    var inData = false
    var dataLines: [String] = []
    var authenticatedAs: String?
    var password: String?
    var mechanism: String?
    /// `AUTH LOGIN` in progress: the username once given.
    var loginStage: (username: String?, active: Bool) = (nil, false)

    init(server: TestSMTPServer, tls: NIOSSLContext, encrypted: Bool) {
        self.server = server
        self.tls = tls
        self.encrypted = encrypted
    }

    func channelActive(context: ChannelHandlerContext) {
        if !server.options.silent { reply(context, "220 localhost Caravan test SMTP") }
        context.fireChannelActive()
    }

    func reply(_ context: ChannelHandlerContext, _ text: String) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text + "\r\n")), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !server.options.silent else { return }
        buffer.append(contentsOf: unwrapInboundIn(data).readableBytesView)
        while let newline = buffer.firstIndex(of: 0x0A) {
            var line = Array(buffer[..<newline])
            buffer.removeSubrange(...newline)
            if line.last == 0x0D { line.removeLast() }
            handle(String(decoding: line, as: UTF8.self), context: context)
        }
    }

    func handle(_ line: String, context: ChannelHandlerContext) {
        if inData {
            if line == "." {
                inData = false
                finishMessage(context)
            } else {
                dataLines.append(line.hasPrefix(".") ? String(line.dropFirst()) : line)
            }
            return
        }
        if loginStage.active {
            let decoded = Data(base64Encoded: line).map { String(decoding: $0, as: UTF8.self) } ?? ""
            if let username = loginStage.username {
                loginStage = (nil, false)
                authenticate(context, username: username, password: decoded, mechanism: "LOGIN")
            } else {
                loginStage = (decoded, true)
                reply(context, "334 UGFzc3dvcmQ6")
            }
            return
        }
        let verb = line.split(separator: " ", maxSplits: 1).first.map { $0.uppercased() } ?? ""
        server.record(command: verb == "AUTH" ? "AUTH ***" : line)
        let argument = line.split(separator: " ", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
        switch verb {
        case "EHLO":
            var lines = ["250-localhost greets \(argument)", "250-8BITMIME"]
            if server.options.offersStartTLS && !encrypted { lines.append("250-STARTTLS") }
            if encrypted || server.options.authInClear {
                lines.append("250-AUTH \(server.options.authMechanisms.joined(separator: " "))")
            }
            lines.append("250 SIZE 10485760")
            reply(context, lines.joined(separator: "\r\n"))
        case "HELO":
            reply(context, "250 localhost")
        case "STARTTLS":
            guard server.options.offersStartTLS, !encrypted else {
                reply(context, "502 5.5.1 STARTTLS not available")
                return
            }
            reply(context, "220 2.0.0 Ready to start TLS")
            encrypted = true
            do {
                try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
            } catch {
                context.close(promise: nil)
            }
        case "AUTH":
            let parts = argument.split(separator: " ").map(String.init)
            let mechanism = parts.first?.uppercased() ?? ""
            guard server.options.authMechanisms.contains(mechanism), encrypted || server.options.authInClear else {
                reply(context, "504 5.5.4 Unrecognized authentication type")
                return
            }
            if mechanism == "PLAIN" {
                guard parts.count == 2, let decoded = Data(base64Encoded: parts[1]) else {
                    reply(context, "501 5.5.2 Cannot decode")
                    return
                }
                let fields = decoded.split(separator: 0, omittingEmptySubsequences: false).map {
                    String(decoding: $0, as: UTF8.self)
                }
                guard fields.count == 3 else {
                    reply(context, "501 5.5.2 Cannot decode")
                    return
                }
                authenticate(context, username: fields[1], password: fields[2], mechanism: "PLAIN")
            } else {
                loginStage = (nil, true)
                reply(context, "334 VXNlcm5hbWU6")
            }
        case "MAIL":
            if server.options.account != nil, authenticatedAs == nil {
                reply(context, "530 5.7.0 Authentication required")
                return
            }
            mailFrom = Self.address(in: argument)
            recipients = []
            reply(context, "250 2.1.0 Ok")
        case "RCPT":
            guard mailFrom != nil else {
                reply(context, "503 5.5.1 MAIL first")
                return
            }
            let recipient = Self.address(in: argument)
            if recipient == server.options.refusedRecipient {
                reply(context, "550 5.1.1 <\(recipient)>: Recipient address rejected: no such user")
                return
            }
            recipients.append(recipient)
            reply(context, "250 2.1.5 Ok")
        case "DATA":
            guard mailFrom != nil, !recipients.isEmpty else {
                reply(context, "503 5.5.1 RCPT first")
                return
            }
            inData = true
            dataLines = []
            reply(context, "354 End data with <CR><LF>.<CR><LF>")
        case "RSET":
            mailFrom = nil
            recipients = []
            reply(context, "250 2.0.0 Ok")
        case "NOOP":
            reply(context, "250 2.0.0 Ok")
        case "QUIT":
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "221 2.0.0 Bye\r\n"))).whenComplete { _ in
                channel.close(promise: nil)
            }
        default:
            reply(context, "502 5.5.2 Error: command not recognized")
        }
    }

    func authenticate(_ context: ChannelHandlerContext, username: String, password: String, mechanism: String) {
        guard let account = server.options.account, account.username == username, account.password == password else {
            reply(context, "535 5.7.8 Error: authentication failed")
            return
        }
        authenticatedAs = username
        self.password = password
        self.mechanism = mechanism
        reply(context, "235 2.7.0 Authentication successful")
    }

    func finishMessage(_ context: ChannelHandlerContext) {
        let message = TestSMTPServer.Message(
            mailFrom: mailFrom ?? "",
            recipients: recipients,
            data: dataLines.map { $0 + "\r\n" }.joined(),
            encrypted: encrypted,
            authenticatedAs: authenticatedAs,
            password: password,
            mechanism: mechanism,
            accepted: true
        )
        mailFrom = nil
        recipients = []
        if server.record(message) {
            reply(context, "250 2.0.0 Ok: queued as TEST\(server.messages.count)")
        } else {
            reply(context, "451 4.3.0 Try again later")
        }
    }

    /// The address in `FROM:<a@b>` or `TO:<a@b>`.
    static func address(in argument: String) -> String {
        guard let open = argument.firstIndex(of: "<"), let close = argument.lastIndex(of: ">"), open < close else {
            return argument
        }
        return String(argument[argument.index(after: open)..<close])
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, made once per process with `openssl` in a temporary
/// directory. `openssl` runs on a Dispatch thread: tests starting servers at once wait for the one making without
/// holding a cooperative thread.
final class TestCertificate: Sendable {
    static let shared = TestCertificate()

    private let making = Mutex<Task<(certificate: String, key: String), any Error>?>(nil)

    func serverConfiguration() async throws -> TLSConfiguration {
        let task = making.withLock { making in
            if let making { return making }
            let task = Task { try await Self.make() }
            making = task
            return task
        }
        let (certificate, key) = try await task.value
        return TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        )
    }

    private static func make() async throws -> (certificate: String, key: String) {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try makeBlocking() })
            }
        }
    }

    private static func makeBlocking() throws -> (certificate: String, key: String) {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("caravan-smtp-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let certificate = directory + "/cert.pem"
        let key = directory + "/key.pem"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestSetupError.failed("openssl could not make a test certificate")
        }
        return (certificate, key)
    }
}
