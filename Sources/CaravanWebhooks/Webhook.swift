/// An outbound webhook: a subscription of an organization to its run events, delivered to a URL.
public struct WebhookName: Sendable, Hashable {
    public var value: String
    public init(_ value: String) { self.value = value }
}
