/// One server-sent event: its `event` name (`nil` for the default, "message") and its `data` lines joined by "\n".
struct ServerSentEvent: Sendable, Hashable {
    var event: String?
    var data: String
}

/// An incremental parser of `text/event-stream` as the WHATWG HTML standard defines it: feed it bytes as they
/// arrive, in chunks of any size, and take out the events they complete. `id` and `retry` fields and comments are
/// ignored (model APIs do not reconnect).
///
/// (The `eventsource` package's parser is an actor fed one byte per call, and the package does not build on
/// Linux; this one is a plain value.)
struct ServerSentEventParser {
    private var line: [UInt8] = []
    private var afterCR = false
    private var eventName: String?
    private var dataLines: [String] = []

    /// Consumes `bytes` and returns the events they complete, in order.
    mutating func consume(_ bytes: some Sequence<UInt8>) -> [ServerSentEvent] {
        var events: [ServerSentEvent] = []
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\n"):
                if afterCR {
                    afterCR = false
                } else {
                    endLine(into: &events)
                }
            case UInt8(ascii: "\r"):
                afterCR = true
                endLine(into: &events)
            default:
                afterCR = false
                line.append(byte)
            }
        }
        return events
    }

    /// Ends the stream: a last event not followed by a blank line is still returned.
    mutating func finish() -> [ServerSentEvent] {
        var events: [ServerSentEvent] = []
        if !line.isEmpty { endLine(into: &events) }
        dispatch(into: &events)
        return events
    }

    private mutating func endLine(into events: inout [ServerSentEvent]) {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty { return dispatch(into: &events) }
        if line.first == UInt8(ascii: ":") { return }  // a comment, e.g. a keep-alive
        let text = String(decoding: line, as: UTF8.self)
        var field = Substring(text)
        var value: Substring = ""
        if let colon = text.firstIndex(of: ":") {
            field = text[..<colon]
            value = text[text.index(after: colon)...]
            if value.first == " " { value = value.dropFirst() }
        }
        switch field {
        case "event": eventName = String(value)
        case "data": dataLines.append(String(value))
        default: break
        }
    }

    private mutating func dispatch(into events: inout [ServerSentEvent]) {
        defer {
            eventName = nil
            dataLines = []
        }
        guard !dataLines.isEmpty else { return }
        events.append(ServerSentEvent(event: eventName, data: dataLines.joined(separator: "\n")))
    }
}
