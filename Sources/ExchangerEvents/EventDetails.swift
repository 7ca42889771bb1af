/// Detail of DOCUMENT_COPIED and NATIVE_DOCUMENT_COPIED: one file copied to the destination case.
public struct FileCopiedDetail: Sendable, Hashable, Codable {
    public var sourceDocumentID: Int64
    public var exhibitID: Int64?
    public var fileName: String
    public var sourceKey: String
    public var destinationKey: String
    /// The size, when the store reported it with the copy (S3's CopyObject does not).
    public var bytes: Int64?

    enum CodingKeys: String, CodingKey {
        case sourceDocumentID = "sourceDocumentId", exhibitID = "exhibitId", fileName, sourceKey, destinationKey, bytes
    }

    public init(sourceDocumentID: Int64, exhibitID: Int64?, fileName: String, sourceKey: String, destinationKey: String, bytes: Int64?) {
        self.sourceDocumentID = sourceDocumentID
        self.exhibitID = exhibitID
        self.fileName = fileName
        self.sourceKey = sourceKey
        self.destinationKey = destinationKey
        self.bytes = bytes
    }
}

/// Detail of DOCUMENT_NOT_FOUND: a file the document should have is missing in the source case.
public struct DocumentNotFoundDetail: Sendable, Hashable, Codable {
    public var sourceDocumentID: Int64
    public var exhibitID: Int64?
    /// The source keys that were missing.
    public var missingKeys: [String]
    /// The processor that noticed (`s3-copy`, `pre-uploader`).
    public var stage: String

    enum CodingKeys: String, CodingKey {
        case sourceDocumentID = "sourceDocumentId", exhibitID = "exhibitId", missingKeys, stage
    }

    public init(sourceDocumentID: Int64, exhibitID: Int64?, missingKeys: [String], stage: String) {
        self.sourceDocumentID = sourceDocumentID
        self.exhibitID = exhibitID
        self.missingKeys = missingKeys
        self.stage = stage
    }
}

/// Detail of the error events the dead-letter processor publishes (S3_DOC_COPIED,
/// PRE_UPLOADER_FINISHED, … with `status` = `ERROR`; EXCHANGER_FAILED for the orchestrator).
public struct ProcessingErrorDetail: Sendable, Hashable, Codable {
    public var status: String
    public var error: String
    /// The queue the message failed on, and the program that consumes it.
    public var queue: String
    public var program: String?
    public var messageID: String
    public var receiveCount: Int
    /// Why it was dead-lettered: `permanent`, `retriesExhausted`, `leaseExpired`.
    public var reason: String

    enum CodingKeys: String, CodingKey {
        case status, error, queue, program, messageID = "messageId", receiveCount, reason
    }

    public init(error: String, queue: String, program: String?, messageID: String, receiveCount: Int, reason: String) {
        self.status = "ERROR"
        self.error = error
        self.queue = queue
        self.program = program
        self.messageID = messageID
        self.receiveCount = receiveCount
        self.reason = reason
    }
}

/// Detail of EXCHANGER_INITIATED, EXCHANGER_FINISHED and EXCHANGER_FAILED.
public struct ExchangeStatusDetail: Sendable, Hashable, Codable {
    /// Why the exchange failed (EXCHANGER_FAILED only).
    public var reason: String?
    /// Counts of the finished exchange (EXCHANGER_FINISHED only).
    public var summary: ExchangeSummary?

    public init(reason: String? = nil, summary: ExchangeSummary? = nil) {
        self.reason = reason
        self.summary = summary
    }
}

/// What an exchange did, per document.
public struct ExchangeSummary: Sendable, Hashable, Codable {
    public var documents: Int
    public var copied: Int
    public var notFound: Int
    public var failed: Int
    /// Selected documents left out because an earlier exchange delivered them (`skipExchanged`);
    /// nil when none were.
    public var skipped: Int?

    public init(documents: Int, copied: Int, notFound: Int, failed: Int, skipped: Int? = nil) {
        self.documents = documents
        self.copied = copied
        self.notFound = notFound
        self.failed = failed
        self.skipped = skipped
    }
}
