import CaravanCore
import Hummingbird
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
        if let type = request.headers[.contentType], let mediaType = MediaType(from: type),
            !(mediaType.type == .application && (mediaType.subType == "json" || mediaType.subType.hasSuffix("+json")))
        {
            throw CaravanError(.unsupportedMediaType, "Send the body as application/json.")
        }
        let buffer = try await bytes(of: request)
        guard buffer.readableBytes > 0 else {
            throw CaravanError(.invalidJSON, "The request body is empty; a JSON document was expected.")
        }
        return try JSONValue(parsing: buffer.readableBytesView)
    }

    private func tooLarge() -> CaravanError {
        CaravanError(.payloadTooLarge, "The request body is larger than \(maxBytes) bytes.")
    }
}
