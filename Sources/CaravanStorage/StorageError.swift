/// An error from the storage layer, with a stable code; callers compare codes, never messages.
public struct StorageError: Error, Sendable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable {
            case conflict, unavailable, rolledBack, decoding, locked, migration, other
        }
        fileprivate let base: Base
        public var description: String { base.rawValue }

        /// A unique or primary-key constraint refused the write.
        public static let conflict = Code(base: .conflict)
        /// The database cannot be reached.
        public static let unavailable = Code(base: .unavailable)
        /// The database rolled the transaction back to break a deadlock or a serialization conflict: nothing of it
        /// was written, and the same transaction may be tried again.
        public static let rolledBack = Code(base: .rolledBack)
        /// A stored value does not have the type the reader expects.
        public static let decoding = Code(base: .decoding)
        /// Another process holds the data directory.
        public static let locked = Code(base: .locked)
        /// A migration failed or the schema is newer than this binary.
        public static let migration = Code(base: .migration)
        /// Any other database error.
        public static let other = Code(base: .other)
    }

    public var code: Code
    public var message: String
    /// The driver's error, for logs; never shown to API clients.
    public var underlying: (any Error)?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { "storage \(code): \(message)" }

    static func decoding(column: String, expected: String) -> StorageError {
        StorageError(.decoding, "column \(column) does not hold \(expected)")
    }
}
