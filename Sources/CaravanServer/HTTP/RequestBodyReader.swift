public import CaravanCore
import Foundation
public import Hummingbird
import NIOCore

/// Reads request bodies under the configured size limit and parses JSON with a clear `invalid_json` error.
public struct RequestBodyReader: Sendable {
    /// The largest body accepted, in bytes.
    public let maxBytes: Int

    public init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    /// The whole body.
    /// - Throws: `payload_too_large` when the body (or its announced length) is over the limit.
    public func bytes(of request: Request) async throws -> ByteBuffer {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBytes {
            throw tooLarge()
        }
        do {
            return try await request.body.collect(upTo: maxBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge()
        } catch is NIOTooManyBytesError {
            throw tooLarge()
        }
    }

    /// The body parsed as JSON; an empty body is refused.
    /// - Throws: `unsupported_media_type` for a declared non-JSON type, `invalid_json`, `payload_too_large`.
    public func json(of request: Request) async throws -> JSONValue {
        guard let value = try await optionalJSON(of: request) else {
            throw CaravanError(.invalidJSON, "The request body is empty; a JSON document was expected.")
        }
        return value
    }

    /// The body parsed as JSON, or `nil` when there is none, for endpoints whose body is optional.
    /// - Throws: `unsupported_media_type` for a declared non-JSON type, `invalid_json`, `payload_too_large`.
    public func optionalJSON(of request: Request) async throws -> JSONValue? {
        if let type = request.headers[.contentType], let mediaType = MediaType(from: type),
            !(mediaType.type == .application && (mediaType.subType == "json" || mediaType.subType.hasSuffix("+json")))
        {
            throw CaravanError(.unsupportedMediaType, "Send the body as application/json.")
        }
        let buffer = try await bytes(of: request)
        guard buffer.readableBytes > 0 else { return nil }
        let value = try JSONValue(parsing: buffer.readableBytesView)
        try Self.refuseDuplicateKeys(buffer.readableBytesView)
        return value
    }

    /// Refuses JSON text in which an object has the same key twice. Parsers disagree on which of the two wins (the
    /// decoder here keeps one silently), so a body a proxy or a signature checked one way could act another way.
    /// Keys are compared as Swift compares strings, the way the decoded object would merge them.
    /// - Throws: `invalid_json` naming the key and where its second occurrence starts.
    static func refuseDuplicateKeys(_ text: some Collection<UInt8>) throws(CaravanError) {
        let bytes = Array(text)
        // One entry per open container: whether it is an object, and (for an object) its keys so far.
        var isObject: [Bool] = []
        var keys: [Set<String>] = []
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                isObject.append(byte == UInt8(ascii: "{"))
                keys.append([])
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = isObject.popLast()
                _ = keys.popLast()
            case UInt8(ascii: "\""):
                let start = index
                var escaped = false
                var hasEscape = false
                index += 1
                while index < bytes.count {
                    let inner = bytes[index]
                    if escaped {
                        escaped = false
                    } else if inner == UInt8(ascii: "\\") {
                        escaped = true
                        hasEscape = true
                    } else if inner == UInt8(ascii: "\"") {
                        break
                    }
                    index += 1
                }
                // A string followed by a colon is a key of the innermost object.
                var next = index + 1
                while next < bytes.count,
                    bytes[next] == 0x20 || bytes[next] == 0x0A || bytes[next] == 0x0D || bytes[next] == 0x09
                {
                    next += 1
                }
                guard next < bytes.count, bytes[next] == UInt8(ascii: ":"), isObject.last == true else { break }
                let raw = bytes[start...min(index, bytes.count - 1)]
                let key =
                    hasEscape
                    ? ((try? JSONDecoder().decode(String.self, from: Data(raw))) ?? String(decoding: raw, as: UTF8.self))
                    : String(decoding: raw.dropFirst().dropLast(), as: UTF8.self)
                guard keys[keys.count - 1].insert(key).inserted else {
                    throw CaravanError(
                        .invalidJSON,
                        "The body is not acceptable JSON: the key \"\(key.prefix(100))\" appears twice in one object (at byte offset \(start))."
                    )
                }
            default: break
            }
            index += 1
        }
    }

    private func tooLarge() -> CaravanError {
        CaravanError(.payloadTooLarge, "The request body is larger than \(maxBytes) bytes.")
    }
}
