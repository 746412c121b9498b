/// An organization: the tenant that owns every other row.
public struct Organization: Sendable, Hashable, Codable {
    /// The organization that holds everything until accounts exist.
    public static let defaultID = "org_default"

    public var id: String
    public var name: String
    public var createdAt: Int64
    public var updatedAt: Int64

    public init(id: String, name: String, createdAt: Int64, updatedAt: Int64) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}
