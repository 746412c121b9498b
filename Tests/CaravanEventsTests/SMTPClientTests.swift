import CaravanCore
import CaravanNotify
import CaravanTestSupport
import Foundation
import HTTPTypes
import NIOCore
import Testing

/// `SMTPClient` against the test SMTP server on loopback, and the messages it sends.
@Suite("SMTP client", .timeLimit(.minutes(2)))
struct SMTPClientTests {
    static func server(
        _ smtp: TestSMTPServer,
        security: SMTPSecurity = .starttls,
        verify: Bool = false,
        password: String = NotifyFixture.password
    ) throws -> SMTPServer {
        SMTPServer(
            host: "localhost",
            addresses: [try SocketAddress(ipAddress: "127.0.0.1", port: smtp.port)],
            security: security,
            insecureSkipVerify: !verify,
            username: NotifyFixture.username,
            password: password
        )
    }

    /// The failure of `body`, or `nil` when it succeeded.
    static func failure(_ body: () async throws(NotifyError) -> Void) async -> NotifyError? {
        do throws(NotifyError) {
            try await body()
            return nil
        } catch {
            return error
        }
    }

    static let message = EmailMessage(
        from: "ops@example.com",
        to: ["a@example.com"],
        subject: "Hello",
        body: "Hi",
        date: 1_750_000_000_000
    )

    @Test func certificatesAreVerifiedByDefault() async throws {
        try await TestSMTPServer.with(NotifyFixture.defaultSMTP) { smtp in
            let server = try Self.server(smtp, verify: true)
            let error = await Self.failure { () async throws(NotifyError) in
                _ = try await SMTPClient().send(
                    Self.message,
                    from: "ops@example.com",
                    to: ["a@example.com"],
                    via: server
                )
            }
            #expect(error?.code == NotifyError.smtpFailed)
            #expect(error?.retryable == false)
            #expect(error?.message.contains("TLS") == true, "\(String(describing: error))")
            #expect(smtp.messages.isEmpty)
            #expect(!smtp.commands.contains("AUTH ***"))
        }
    }

    @Test func implicitTLSWithAuthLogin() async throws {
        var options = NotifyFixture.defaultSMTP
        options.implicitTLS = true
        options.offersStartTLS = false
        options.authMechanisms = ["LOGIN"]
        try await TestSMTPServer.with(options) { smtp in
            let receipt = try await SMTPClient().send(
                Self.message,
                from: "ops@example.com",
                to: ["a@example.com"],
                via: try Self.server(smtp, security: .tls)
            )
            #expect(receipt.code == 250)
            #expect(receipt.encrypted && receipt.authenticated)
            let mail = try #require(smtp.accepted.first)
            #expect(mail.mechanism == "LOGIN")
            #expect(mail.password == NotifyFixture.password)
            #expect(smtp.commands.last == "QUIT")
        }
    }

    @Test func refusalsSayWhetherToTryAgain() async throws {
        var options = NotifyFixture.defaultSMTP
        options.refusedRecipient = "gone@example.com"
        options.temporaryFailures = 1
        try await TestSMTPServer.with(options) { smtp in
            let client = SMTPClient()
            let server = try Self.server(smtp)
            let refused = await Self.failure { () async throws(NotifyError) in
                _ = try await client.send(
                    Self.message,
                    from: "ops@example.com",
                    to: ["a@example.com", "gone@example.com"],
                    via: server
                )
            }
            #expect(refused?.code == NotifyError.smtpFailed)
            #expect(refused?.status == 550)
            #expect(refused?.retryable == false)
            #expect(refused?.reply?.contains("no such user") == true)
            let temporary = await Self.failure { () async throws(NotifyError) in
                _ = try await client.send(Self.message, from: "ops@example.com", to: ["a@example.com"], via: server)
            }
            #expect(temporary?.status == 451)
            #expect(temporary?.retryable == true)
            let wrong = try Self.server(smtp, password: "wrong")
            let unauthorized = await Self.failure { () async throws(NotifyError) in
                _ = try await client.send(Self.message, from: "ops@example.com", to: ["a@example.com"], via: wrong)
            }
            #expect(unauthorized?.status == 535)
            #expect(unauthorized?.message.contains("wrong") == false)
            let receipt = try await client.send(
                Self.message,
                from: "ops@example.com",
                to: ["a@example.com"],
                via: server
            )
            #expect(receipt.code == 250)
        }
    }

    @Test func aSilentServerTimesOut() async throws {
        // A server that accepts the connection and never says anything.
        var options = TestSMTPServer.Options()
        options.silent = true
        try await TestSMTPServer.with(options) { smtp in
            let server = SMTPServer(
                host: "127.0.0.1",
                addresses: [try SocketAddress(ipAddress: "127.0.0.1", port: smtp.port)],
                security: .starttls
            )
            let error = await Self.failure { () async throws(NotifyError) in
                _ = try await SMTPClient(replyTimeout: .milliseconds(200)).send(
                    Self.message,
                    from: "ops@example.com",
                    to: ["a@example.com"],
                    via: server
                )
            }
            #expect(error?.code == .timeout)
            #expect(error?.retryable == true)
            #expect(smtp.connections == 1)
        }
    }

    @Test func messagesKeepToTheLineLimitsAndEncodeHeaders() {
        let long = String(repeating: "Ünïcödé ", count: 40)
        let message = EmailMessage(
            from: "Zoë Ops <ops@example.com>",
            to: (1...12).map { "recipient\($0)@example.com" },
            subject: long,
            body: String(repeating: "é", count: 300) + "\n.\n" + String(repeating: "a ", count: 100) + "\n",
            date: 0
        )
        let text = message.rendered()
        let lines = text.components(separatedBy: "\r\n")
        #expect(lines.allSatisfy { $0.utf8.count <= 78 }, "\(lines.filter { $0.utf8.count > 78 })")
        #expect(text.hasSuffix("\r\n"))
        #expect(!text.replacingOccurrences(of: "\r\n", with: "").contains("\n"))
        #expect(lines.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000"))
        #expect(!lines.contains("."))
        let isASCII = text.unicodeScalars.allSatisfy { $0.value < 0x80 }
        #expect(isASCII)
        let mailHeaders = TestSMTPServer.Message(
            mailFrom: "",
            recipients: [],
            data: text,
            encrypted: true,
            accepted: true
        )
        #expect(NotifyFixture.decodeEncodedWords(mailHeaders.header("Subject") ?? "") == long)
        #expect(mailHeaders.header("To")?.components(separatedBy: ", ").count == 12)
        #expect(mailHeaders.header("From")?.hasSuffix("<ops@example.com>") == true)
        let body = NotifyFixture.decodeQuotedPrintable(mailHeaders.body)
        #expect(body.contains(String(repeating: "é", count: 300) + "\r\n.\r\n"))
    }
}
