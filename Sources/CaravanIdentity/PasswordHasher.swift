import Crypto
import Foundation
import HummingbirdBcrypt
import NIOPosix
import Synchronization

/// Hashes passwords with bcrypt, off the cooperative thread pool. bcrypt reads at most 72 bytes, so the
/// password is first reduced to the base64 of its SHA-384 (64 characters): every character counts, none is cut.
public struct PasswordHasher: Sendable {
    /// bcrypt's cost: 2^cost rounds; 11 takes on the order of 100 ms here.
    public let cost: UInt8

    public init(cost: UInt8 = 11) {
        self.cost = cost
    }

    static func prepared(_ password: String) -> String {
        Data(SHA384.hash(data: Array(password.utf8))).base64EncodedString()
    }

    public func hash(_ password: String) async throws -> String {
        let cost = self.cost
        return try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(Self.prepared(password), cost: cost) }
    }

    public func verify(_ password: String, hash: String) async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(Self.prepared(password), hash: hash) }
    }

    /// Spends the time of a verification without a stored hash, so that an unknown email answers as slowly as a
    /// wrong password.
    public func verifyNothing(_ password: String) async throws {
        _ = try await verify(password, hash: dummyHash)
    }

    private var dummyHash: String {
        Self.dummyHashes.withLock { hashes in
            if let hash = hashes[cost] { return hash }
            let hash = Bcrypt.hash("caravan-timing-equalizer", cost: cost)
            hashes[cost] = hash
            return hash
        }
    }

    private static let dummyHashes = Mutex<[UInt8: String]>([:])
}
