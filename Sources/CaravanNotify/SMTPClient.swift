import CaravanCore
import Foundation
public import NIOCore
import NIOPosix
import NIOSSL

/// How a connection to an SMTP server is protected.
public enum SMTPSecurity: String, Sendable, CaseIterable {
    /// Plain TCP, then `STARTTLS` before anything else; a server that does not offer it is refused (nothing is sent
    /// in clear). Usually port 587.
    case starttls
    /// TLS from the first byte (implicit TLS). Usually port 465.
    case tls
    /// No TLS at all: for a relay on a trusted network. Authentication is refused on such a connection.
    case none
}

/// Where and how to deliver: the server's name (for the certificate), the addresses the egress policy checked,
/// and the credentials.
public struct SMTPServer: Sendable {
    /// The name the certificate is checked against (an IP literal is checked as an address).
    public var host: String
    /// Where to connect, tried in order: the checked addresses, never the name again.
    public var addresses: [SocketAddress]
    public var security: SMTPSecurity
    /// Skips certificate verification: only for test servers and self-signed certificates.
    public var insecureSkipVerify: Bool
    public var username: String?
    public var password: String?

    public init(
        host: String,
        addresses: [SocketAddress],
        security: SMTPSecurity,
        insecureSkipVerify: Bool = false,
        username: String? = nil,
        password: String? = nil
    ) {
        self.host = host
        self.addresses = addresses
        self.security = security
        self.insecureSkipVerify = insecureSkipVerify
        self.username = username
        self.password = password
    }
}

/// What the server said when it accepted a message.
public struct SMTPReceipt: Sendable, Equatable {
    /// The reply code to the end of `DATA` (250).
    public var code: Int
    /// The reply's text (often the server's queue id).
    public var reply: String
    /// Whether the message went over TLS.
    public var encrypted: Bool
    /// Whether the client authenticated.
    public var authenticated: Bool
}

/// An SMTP client (RFC 5321) on SwiftNIO: one message per connection. `EHLO`, `STARTTLS` or implicit TLS,
/// `AUTH PLAIN` (or `LOGIN` when it is the only one offered), `MAIL FROM`, `RCPT TO` for each recipient, `DATA`
/// with dot-stuffing, `QUIT`. Every reply is awaited for at most `replyTimeout`; the connection for at most
/// `connectTimeout` per address. Certificates are verified unless the server says `insecureSkipVerify`.
///
/// Failures are `NotifyError`s: `smtp_failed` for a refusal (retryable when the reply is 4xx), a missing
/// `STARTTLS` or a TLS failure (not retryable); `timeout` and `network_error` (retryable).
public struct SMTPClient: Sendable {
    public var connectTimeout: TimeAmount
    public var replyTimeout: TimeAmount
    let group: any EventLoopGroup

    public init(
        connectTimeout: TimeAmount = .seconds(10),
        replyTimeout: TimeAmount = .seconds(30),
        group: (any EventLoopGroup)? = nil
    ) {
        self.connectTimeout = connectTimeout
        self.replyTimeout = replyTimeout
        self.group = group ?? MultiThreadedEventLoopGroup.singleton
    }

    /// Sends `message` to `recipients` with `sender` as the envelope's return path.
    /// - Throws: `NotifyError`.
    @discardableResult
    public func send(
        _ message: EmailMessage,
        from sender: String,
        to recipients: [String],
        via server: SMTPServer
    ) async throws(NotifyError) -> SMTPReceipt {
        do {
            return try await deliver(message, from: sender, to: recipients, via: server)
        } catch let error as SMTPProblem {
            throw error.notifyError(host: server.host)
        } catch let error as NotifyError {
            throw error
        } catch {
            throw SMTPProblem.from(error).notifyError(host: server.host)
        }
    }

    private func deliver(
        _ message: EmailMessage,
        from sender: String,
        to recipients: [String],
        via server: SMTPServer
    ) async throws -> SMTPReceipt {
        guard !recipients.isEmpty else { throw SMTPProblem.protocolViolation("There is no recipient.") }
        let tls = try Self.tlsContext(insecure: server.insecureSkipVerify)
        let session = try await connect(server, tls: server.security == .tls ? tls : nil)
        defer { session.close() }
        var encrypted = server.security == .tls
        try await session.expect("greeting", [220], timeout: replyTimeout)
        let heloName = EmailAddress.domain(of: sender) ?? "localhost"
        var extensions = try await session.hello(heloName, timeout: replyTimeout)
        if server.security == .starttls {
            guard extensions.contains(where: { $0.uppercased() == "STARTTLS" }) else {
                throw SMTPProblem.startTLSNotOffered
            }
            try await session.command("STARTTLS", stage: "STARTTLS", [220], timeout: replyTimeout)
            try await session.startTLS(tls, serverHostname: Self.sniName(server.host))
            encrypted = true
            extensions = try await session.hello(heloName, timeout: replyTimeout)
        }
        var authenticated = false
        if let username = server.username, !username.isEmpty {
            guard encrypted else { throw SMTPProblem.authInClear }
            let password = server.password ?? ""
            let mechanisms = Set(
                extensions.compactMap { line -> [String]? in
                    let words = line.uppercased().split(separator: " ").map(String.init)
                    return words.first == "AUTH" ? Array(words.dropFirst()) : nil
                }.joined()
            )
            if mechanisms.contains("PLAIN") {
                let token = Data(([0] + Array(username.utf8) + [0] + Array(password.utf8))).base64EncodedString()
                try await session.command("AUTH PLAIN \(token)", stage: "AUTH", [235], timeout: replyTimeout)
            } else if mechanisms.contains("LOGIN") {
                try await session.command("AUTH LOGIN", stage: "AUTH", [334], timeout: replyTimeout)
                let user = Data(username.utf8).base64EncodedString()
                try await session.command(user, stage: "AUTH", [334], timeout: replyTimeout)
                let secret = Data(password.utf8).base64EncodedString()
                try await session.command(secret, stage: "AUTH", [235], timeout: replyTimeout)
            } else {
                throw SMTPProblem.authNotOffered
            }
            authenticated = true
        }
        try await session.command("MAIL FROM:<\(sender)>", stage: "MAIL FROM", [250], timeout: replyTimeout)
        for recipient in recipients {
            try await session.command("RCPT TO:<\(recipient)>", stage: "RCPT TO", [250, 251], timeout: replyTimeout)
        }
        try await session.command("DATA", stage: "DATA", [354], timeout: replyTimeout)
        try await session.write(Self.dotStuffed(message.rendered()) + ".\r\n")
        let accepted = try await session.expect("the message", [250], timeout: replyTimeout)
        // The message is accepted: a failed QUIT changes nothing.
        _ = try? await session.command("QUIT", stage: "QUIT", [221], timeout: .seconds(5))
        return SMTPReceipt(
            code: accepted.code,
            reply: accepted.text,
            encrypted: encrypted,
            authenticated: authenticated
        )
    }

    /// Doubles the `.` that starts a line (RFC 5321 4.5.2), so no line of the message ends `DATA`.
    static func dotStuffed(_ message: String) -> String {
        var result = message.hasPrefix(".") ? "." : ""
        result += message.replacingOccurrences(of: "\r\n.", with: "\r\n..")
        return result
    }

    /// A host name for SNI; none for an IP literal.
    static func sniName(_ host: String) -> String? {
        let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, bare, &v4) == 1 || inet_pton(AF_INET6, bare, &v6) == 1 { return nil }
        return bare
    }

    static func tlsContext(insecure: Bool) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if insecure { configuration.certificateVerification = .none }
        return try NIOSSLContext(configuration: configuration)
    }

    private func connect(_ server: SMTPServer, tls: NIOSSLContext?) async throws -> SMTPSession {
        var lastError: any Error = SMTPProblem.connect("The host \(server.host) has no address to connect to.")
        let serverHostname = Self.sniName(server.host)
        for address in server.addresses {
            do {
                let channel = try await ClientBootstrap(group: group)
                    .connectTimeout(connectTimeout)
                    .channelOption(.socketOption(.so_reuseaddr), value: 1)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            if let tls {
                                let handler = try NIOSSLClientHandler(context: tls, serverHostname: serverHostname)
                                try channel.pipeline.syncOperations.addHandler(handler)
                            }
                            try channel.pipeline.syncOperations.addHandler(SMTPReplyReader(tlsPending: tls != nil))
                        }
                    }
                    .connect(to: address).get()
                let reader = try await channel.eventLoop.submit {
                    NIOLoopBound(
                        try channel.pipeline.syncOperations.handler(type: SMTPReplyReader.self),
                        eventLoop: channel.eventLoop
                    )
                }.get()
                return SMTPSession(channel: channel, reader: reader)
            } catch {
                lastError = error
            }
        }
        throw SMTPProblem.from(lastError)
    }
}

/// One SMTP reply: its code and its lines (without the code).
struct SMTPReply: Sendable, Equatable {
    var code: Int
    var lines: [String]
    var text: String { lines.joined(separator: " ") }
}

/// What went wrong in an SMTP conversation, before it is reported as a `NotifyError`.
enum SMTPProblem: Error {
    case refused(stage: String, SMTPReply)
    case timeout(stage: String)
    case closed
    case connect(String)
    case tls(String)
    case startTLSNotOffered
    case authNotOffered
    case authInClear
    case protocolViolation(String)

    static func from(_ error: any Error) -> SMTPProblem {
        if let problem = error as? SMTPProblem { return problem }
        if error is NIOSSLError || error is BoringSSLError {
            return .tls("The TLS handshake failed (\(String(describing: error).prefix(160))).")
        }
        if error is ChannelError || error is NIOConnectionError || error is IOError {
            if case ChannelError.connectTimeout = error { return .timeout(stage: "connect") }
            if let channelError = error as? ChannelError,
                channelError == .ioOnClosedChannel
                    || channelError == .alreadyClosed || channelError == .eof
            {
                return .closed
            }
            return .connect("Could not connect: \(String(describing: error).prefix(160)).")
        }
        if error is CancellationError { return .closed }
        return .protocolViolation(String(describing: error).prefix(160).description)
    }

    func notifyError(host: String) -> NotifyError {
        switch self {
        case .refused(let stage, let reply):
            return NotifyError(
                code: NotifyError.smtpFailed,
                message: "The SMTP server \(host) refused \(stage): \(reply.code) \(NotifyError.excerpt(reply.text))",
                retryable: (400..<500).contains(reply.code),
                status: reply.code,
                reply: NotifyError.excerpt(reply.text)
            )
        case .timeout(let stage):
            return NotifyError(
                code: .timeout,
                message: "The SMTP server \(host) did not answer \(stage) in time.",
                retryable: true
            )
        case .closed:
            return NotifyError(
                code: .networkError,
                message: "The SMTP server \(host) closed the connection.",
                retryable: true
            )
        case .connect(let detail):
            return NotifyError(code: .networkError, message: "\(host): \(detail)", retryable: true)
        case .tls(let detail):
            return NotifyError(code: NotifyError.smtpFailed, message: "\(host): \(detail)", retryable: false)
        case .startTLSNotOffered:
            return NotifyError(
                code: NotifyError.smtpFailed,
                message: "The SMTP server \(host) does not offer STARTTLS; nothing was sent in clear.",
                retryable: false
            )
        case .authNotOffered:
            return NotifyError(
                code: NotifyError.smtpFailed,
                message: "The SMTP server \(host) offers neither AUTH PLAIN nor AUTH LOGIN.",
                retryable: false
            )
        case .authInClear:
            return NotifyError(
                code: NotifyError.smtpFailed,
                message: "A password is not sent over a connection without TLS (security: none).",
                retryable: false
            )
        case .protocolViolation(let detail):
            return NotifyError(
                code: NotifyError.smtpFailed,
                message: "The SMTP conversation with \(host) failed: \(detail)",
                retryable: false
            )
        }
    }
}

/// A connection to an SMTP server: commands out, replies in, each reply awaited with a timeout. Cancelling the
/// task that waits closes the connection.
final class SMTPSession: Sendable {
    let channel: any Channel
    let reader: NIOLoopBound<SMTPReplyReader>

    init(channel: any Channel, reader: NIOLoopBound<SMTPReplyReader>) {
        self.channel = channel
        self.reader = reader
    }

    func close() { channel.close(promise: nil) }

    func write(_ text: String) async throws {
        do {
            try await channel.writeAndFlush(ByteBuffer(string: text)).get()
        } catch {
            // The connection failed under the write; the reader learns why (a TLS handshake refused, a close) when
            // the channel closes, so its next reply fails with that reason.
            _ = try await reply("the connection", timeout: .seconds(2))
            throw error
        }
    }

    /// The next reply, within `timeout`.
    func reply(_ stage: String, timeout: TimeAmount) async throws -> SMTPReply {
        let reader = self.reader
        let channel = self.channel
        return try await withTaskCancellationHandler {
            try await channel.eventLoop.flatSubmit {
                reader.value.next(stage: stage, timeout: timeout, on: channel.eventLoop)
            }.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    /// The next reply, which must have one of `codes`.
    @discardableResult
    func expect(_ stage: String, _ codes: Set<Int>, timeout: TimeAmount) async throws -> SMTPReply {
        let answer = try await reply(stage, timeout: timeout)
        guard codes.contains(answer.code) else { throw SMTPProblem.refused(stage: stage, answer) }
        return answer
    }

    /// Sends one command line and awaits its reply. Lines with CR or LF are refused: one command is one line.
    @discardableResult
    func command(_ line: String, stage: String, _ codes: Set<Int>, timeout: TimeAmount) async throws -> SMTPReply {
        guard !line.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" }), line.utf8.count <= 510 else {
            throw SMTPProblem.protocolViolation("A command for \(stage) is not one line of at most 510 bytes.")
        }
        try await write(line + "\r\n")
        return try await expect(stage, codes, timeout: timeout)
    }

    /// `EHLO` (or `HELO` when the server refuses it), returning the extensions the server lists.
    func hello(_ name: String, timeout: TimeAmount) async throws -> [String] {
        try await write("EHLO \(name)\r\n")
        let answer = try await reply("EHLO", timeout: timeout)
        if answer.code == 250 { return Array(answer.lines.dropFirst()) }
        guard (500..<600).contains(answer.code) else { throw SMTPProblem.refused(stage: "EHLO", answer) }
        try await command("HELO \(name)", stage: "HELO", [250], timeout: timeout)
        return []
    }

    /// Puts TLS under the conversation after the server's `220` to `STARTTLS`. Anything the server sent after that
    /// reply, before the handshake, is refused: it would have been injected in clear (CVE-2011-0411).
    func startTLS(_ context: NIOSSLContext, serverHostname: String?) async throws {
        let reader = self.reader
        let channel = self.channel
        try await channel.eventLoop.submit {
            guard !reader.value.hasPendingInput else {
                throw SMTPProblem.protocolViolation("The server sent data after its STARTTLS reply.")
            }
            let handler = try NIOSSLClientHandler(context: context, serverHostname: serverHostname)
            try channel.pipeline.syncOperations.addHandler(handler, position: .first)
            reader.value.tlsPending = true
        }.get()
    }
}

/// Reads replies off the wire: lines up to CRLF, multi-line replies (`250-…`) joined, each complete reply handed
/// to the waiting caller or queued. Runs on the channel's event loop only.
final class SMTPReplyReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    /// The longest line accepted (RFC 5321 says 512 for a reply line; some servers send more).
    static let maxLineBytes = 4096
    /// The most lines one reply may have.
    static let maxReplyLines = 128

    private var buffer: [UInt8] = []
    private var lines: [String] = []
    private var code: Int?
    private var replies: [SMTPReply] = []
    private var failure: (any Error)?
    private var waiter: (promise: EventLoopPromise<SMTPReply>, timer: Scheduled<Void>)?
    /// TLS was put under the connection and no reply has come through it yet: a close now is the handshake failing
    /// (NIOSSL may report the reason only after the close).
    var tlsPending: Bool

    init(tlsPending: Bool) {
        self.tlsPending = tlsPending
    }

    /// Whether bytes or replies arrived that no one asked for yet.
    var hasPendingInput: Bool { !buffer.isEmpty || !lines.isEmpty || !replies.isEmpty }

    func next(stage: String, timeout: TimeAmount, on loop: any EventLoop) -> EventLoopFuture<SMTPReply> {
        if !replies.isEmpty { return loop.makeSucceededFuture(replies.removeFirst()) }
        if let failure { return loop.makeFailedFuture(failure) }
        let promise = loop.makePromise(of: SMTPReply.self)
        let bound = NIOLoopBound(self, eventLoop: loop)
        let timer = loop.scheduleTask(in: timeout) {
            let reader = bound.value
            guard let waiter = reader.waiter else { return }
            reader.waiter = nil
            reader.failure = SMTPProblem.timeout(stage: stage)
            waiter.promise.fail(SMTPProblem.timeout(stage: stage))
        }
        waiter = (promise, timer)
        return promise.futureResult
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        buffer.append(contentsOf: bytes.readableBytesView)
        while let newline = buffer.firstIndex(of: 0x0A) {
            var line = Array(buffer[..<newline])
            buffer.removeSubrange(...newline)
            if line.last == 0x0D { line.removeLast() }
            if let problem = take(line) {
                fail(problem)
                context.close(promise: nil)
                return
            }
        }
        if buffer.count > Self.maxLineBytes {
            fail(SMTPProblem.protocolViolation("A reply line is longer than \(Self.maxLineBytes) bytes."))
            context.close(promise: nil)
        }
    }

    /// Adds one line to the reply being read; a problem when the line is not an SMTP reply line.
    private func take(_ line: [UInt8]) -> SMTPProblem? {
        guard line.count >= 3, line.count <= Self.maxLineBytes, line[0..<3].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let value = Int(String(decoding: line[0..<3], as: UTF8.self)), value >= 200, value < 600,
            line.count == 3 || line[3] == 0x20 || line[3] == 0x2D
        else { return .protocolViolation("The server sent a line that is not an SMTP reply.") }
        if let code, code != value { return .protocolViolation("A multi-line reply changed its code.") }
        code = value
        lines.append(String(decoding: line.dropFirst(4), as: UTF8.self))
        guard lines.count <= Self.maxReplyLines else { return .protocolViolation("A reply has too many lines.") }
        tlsPending = false
        if line.count == 3 || line[3] == 0x20 {
            let reply = SMTPReply(code: value, lines: lines)
            lines = []
            code = nil
            if let waiter {
                self.waiter = nil
                waiter.timer.cancel()
                waiter.promise.succeed(reply)
            } else {
                replies.append(reply)
            }
        }
        return nil
    }

    private func fail(_ error: any Error) {
        if failure == nil { failure = error }
        if let waiter {
            self.waiter = nil
            waiter.timer.cancel()
            waiter.promise.fail(failure ?? error)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(
            tlsPending
                ? SMTPProblem.tls("The TLS handshake failed (is the certificate trusted? see insecure_skip_verify).")
                : SMTPProblem.closed
        )
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(SMTPProblem.from(error))
        context.close(promise: nil)
    }
}
