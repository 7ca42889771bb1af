/// What a redrive did with one dead letter.
public struct DeadLetterRedrive: Sendable, Hashable {
    public var id: Int64
    /// The queue it was (or would have been) sent to; nil when the record does not exist.
    public var target: String?
    /// The new message's id, when it was sent.
    public var messageID: String?
    /// Why it was not redriven (the record stays as it was).
    public var error: String?

    public init(id: Int64, target: String?, messageID: String? = nil, error: String? = nil) {
        self.id = id
        self.target = target
        self.messageID = messageID
        self.error = error
    }

    /// Whether the message was sent.
    public var succeeded: Bool { messageID != nil }
}
