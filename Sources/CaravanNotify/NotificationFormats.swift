public import CaravanCore
import Foundation

/// The bodies notifications are sent as. Outbound webhooks use the same formats for their `slack` and `email`
/// deliveries, so a message looks the same whichever way it left.
public enum NotificationFormats {
    /// The longest text of a Slack section block, in characters: a longer one makes Slack refuse the message.
    public static let maxSectionCharacters = 3000

    /// A Slack-compatible incoming-webhook payload: `text` (what notifications and older receivers show) and one
    /// section block with the same text as mrkdwn. Mattermost and Rocket.Chat read `text` and accept the block.
    /// `&`, `<` and `>` are escaped as Slack asks, so run data cannot mention `<!channel>` or forge a link.
    public static func slack(_ notification: Notification) -> JSONValue {
        let note = notification.truncated
        let title = slackEscaped(note.title)
        let text = slackEscaped(note.text)
        let message = title.isEmpty ? text : "*\(title)*\n\(text)"
        return [
            "text": .string(message),
            "blocks": [
                [
                    "type": "section",
                    "text": [
                        "type": "mrkdwn",
                        "text": .string(Notification.cut(message.isEmpty ? " " : message, to: maxSectionCharacters)),
                    ],
                ]
            ],
        ]
    }

    /// A generic JSON webhook payload: `{"title", "text", "data"}`.
    public static func json(_ notification: Notification) -> JSONValue {
        let note = notification.truncated
        return ["title": .string(note.title), "text": .string(note.text), "data": note.data]
    }

    /// Escapes the three characters Slack's mrkdwn gives a meaning to.
    static func slackEscaped(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            default: result.append(character)
            }
        }
        return result
    }

    /// The plain-text body of an email: the text, then the data as JSON when there is any.
    public static func emailBody(_ notification: Notification) -> String {
        let note = notification.truncated
        guard !note.data.isNull else { return note.text }
        return note.text + "\n\n" + note.data.canonicalText
    }
}

/// An email as RFC 5322 and MIME describe it: headers and a text/plain UTF-8 body in quoted-printable, with CRLF
/// line ends and no line longer than 78 characters. What the caller gives it never reaches the headers raw: line
/// breaks in a subject become spaces (no header can be added), non-ASCII subjects are RFC 2047 encoded words, and
/// addresses are checked.
public struct EmailMessage: Sendable, Equatable {
    public var from: String
    public var to: [String]
    public var subject: String
    public var body: String
    /// Unix milliseconds.
    public var date: Int64
    public var messageID: String

    public init(from: String, to: [String], subject: String, body: String, date: Int64, messageID: String? = nil) {
        self.from = from
        self.to = to
        self.subject = subject
        self.body = body
        self.date = date
        let domain = EmailAddress.domain(of: EmailAddress.bare(from) ?? "") ?? "caravan.invalid"
        self.messageID = messageID ?? "<\(UUID().uuidString.lowercased())@\(domain)>"
    }

    /// The message as sent after `DATA` (before dot-stuffing), CRLF line ends, ending with CRLF.
    public func rendered() -> String {
        var lines = [
            "Date: \(Self.rfc5322Date(date))",
            "From: \(EmailAddress.headerForm(from))",
        ]
        lines += Self.folded("To: ", to.map { "<\($0)>" })
        lines.append("Subject: \(Self.encodedHeaderText(subject))")
        lines += [
            "Message-ID: \(messageID)",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "Auto-Submitted: auto-generated",
            "",
        ]
        return lines.joined(separator: "\r\n") + "\r\n" + Self.quotedPrintable(body)
    }

    /// `To:` with its addresses, folded so that no line passes 78 characters.
    static func folded(_ name: String, _ items: [String]) -> [String] {
        var lines: [String] = []
        var current = name
        for (index, item) in items.enumerated() {
            let piece = item + (index < items.count - 1 ? "," : "")
            if current != name, current.count + 1 + piece.count > 78 {
                lines.append(current)
                current = " " + piece
            } else {
                current += (current == name ? "" : " ") + piece
            }
        }
        lines.append(current)
        return lines
    }

    /// A header's free text: control characters (CR and LF included) become spaces; text that is not printable
    /// ASCII, or too long for one line, becomes RFC 2047 encoded words (`=?utf-8?B?…?=`), folded.
    static func encodedHeaderText(_ text: String) -> String {
        let clean = String(
            String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 })
        )
        let plain = clean.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F }
        if plain && clean.utf8.count <= 66 && !clean.contains("=?") { return clean }
        // Each encoded word holds whole code points, at most 42 bytes of UTF-8 (56 of base64 + 12 of
        // wrapping), so that even the first line, after `Subject: `, stays within 78 characters.
        var words: [String] = []
        var chunk: [UInt8] = []
        for scalar in clean.unicodeScalars {
            let bytes = Array(String(scalar).utf8)
            if chunk.count + bytes.count > 42 {
                words.append("=?utf-8?B?\(Data(chunk).base64EncodedString())?=")
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty || words.isEmpty { words.append("=?utf-8?B?\(Data(chunk).base64EncodedString())?=") }
        return words.joined(separator: "\r\n ")
    }

    /// Quoted-printable (RFC 2045) of UTF-8 text: line breaks become CRLF, lines at most 76 characters with soft
    /// breaks, `=` and bytes outside printable ASCII as `=XX`, trailing spaces and a leading `.` encoded.
    static func quotedPrintable(_ text: String) -> String {
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        var output = ""
        for line in normalized.split(separator: "\n", omittingEmptySubsequences: false) {
            let bytes = Array(line.utf8)
            var current = ""
            for (index, byte) in bytes.enumerated() {
                let isLast = index == bytes.count - 1
                let piece: String
                if (byte >= 33 && byte <= 126 && byte != 61 && !(byte == 46 && current.isEmpty))
                    || (byte == 32 && !isLast) || (byte == 9 && !isLast)
                {
                    piece = String(UnicodeScalar(byte))
                } else {
                    piece = String(format: "=%02X", byte)
                }
                if current.count + piece.count > 75 {
                    output += current + "=\r\n"
                    current = ""
                }
                current += piece
            }
            output += current + "\r\n"
        }
        return output
    }

    /// `Tue, 01 Jul 2025 12:00:00 +0000`.
    static func rfc5322Date(_ milliseconds: Int64) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }
}

/// Email addresses as Caravan accepts them: `local@domain` in printable ASCII, without spaces, angle brackets,
/// quotes or line breaks, at most 254 characters; `from` may add a display name (`Caravan <ops@example.com>`).
public enum EmailAddress {
    /// Whether `address` is a plain address Caravan sends to.
    public static func isValid(_ address: String) -> Bool {
        let bytes = Array(address.utf8)
        guard bytes.count >= 3, bytes.count <= 254, let at = bytes.lastIndex(of: 0x40), at > 0, at < bytes.count - 1
        else { return false }
        let forbidden: Set<UInt8> = [0x20, 0x22, 0x28, 0x29, 0x2C, 0x3A, 0x3B, 0x3C, 0x3E, 0x5B, 0x5C, 0x5D]
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F && !forbidden.contains($0) }) else { return false }
        let domain = bytes[(at + 1)...]
        return !domain.contains(0x40) && !domain.starts(with: [0x2E]) && domain.last != 0x2E
            && bytes[..<at].count <= 64
    }

    /// The address of a `from`: itself, or what is between `<` and `>` after a display name; `nil` when invalid.
    public static func bare(_ from: String) -> String? {
        if let open = from.lastIndex(of: "<"), from.hasSuffix(">") {
            let address = String(from[from.index(after: open)..<from.index(before: from.endIndex)])
            let name = from[..<open]
            guard isValid(address),
                !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == "<" || $0 == ">" })
            else { return nil }
            return address
        }
        return isValid(from) ? from : nil
    }

    /// `from` as a header: the display name as an RFC 2047 word when it is not plain ASCII.
    static func headerForm(_ from: String) -> String {
        guard let address = bare(from) else { return "<invalid>" }
        guard let open = from.lastIndex(of: "<") else { return "<\(address)>" }
        let name = from[..<open].trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty else { return "<\(address)>" }
        let plain = name.unicodeScalars.allSatisfy {
            $0.value >= 0x20 && $0.value < 0x7F && $0 != "\"" && $0 != "\\"
        }
        return (plain ? "\"\(name)\"" : EmailMessage.encodedHeaderText(name)) + " <\(address)>"
    }

    static func domain(of address: String) -> String? {
        address.lastIndex(of: "@").map { String(address[address.index(after: $0)...]) }
    }
}
