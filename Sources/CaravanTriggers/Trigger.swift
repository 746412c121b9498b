/// An inbound trigger: a public hook URL that starts runs from the requests it receives.
public struct TriggerName: Sendable, Hashable {
    public var value: String
    public init(_ value: String) { self.value = value }
}
