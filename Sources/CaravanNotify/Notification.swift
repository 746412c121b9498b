public import CaravanCore

/// A message for people: what happened, in a few words, with the data behind it.
public struct Notification: Sendable, Equatable {
    public var title: String
    public var text: String
    public var data: JSONValue

    public init(title: String, text: String, data: JSONValue = .null) {
        self.title = title
        self.text = text
        self.data = data
    }
}
