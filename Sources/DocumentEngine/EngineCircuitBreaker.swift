import Foundation
import Logging

/// The document-engine circuit breaker of one process: ``CircuitBreakerState`` behind an actor.
///
/// Calls go through ``call(_:)``: refused with a transient ``DocumentEngineError`` while open,
/// counted as failures only when they fail transiently (timeouts, 5xx, connection loss; a 4xx or a
/// missing document says the engine answers). Workers ask ``permitsReceiving()`` before each
/// receive, so while the engine is down no message is received and no receive count is burnt; the
/// half-open trial is a probe (``init(settings:logger:probe:)``), not a real message.
public actor EngineCircuitBreaker {
    public let settings: CircuitBreakerSettings
    private var state: CircuitBreakerState
    private let probe: @Sendable () async throws -> Void
    private let logger: Logger

    /// - Parameter probe: the half-open trial: throws a transient ``DocumentEngineError`` while the
    ///   engine is unavailable (e.g. `exists` of some id).
    public init(
        settings: CircuitBreakerSettings = CircuitBreakerSettings(), logger: Logger = Logger(label: "exchanger.document-engine"),
        probe: @escaping @Sendable () async throws -> Void
    ) {
        self.settings = settings
        self.state = CircuitBreakerState(settings: settings)
        self.probe = probe
        self.logger = logger
    }

    /// The state machine's current phase.
    public var phase: CircuitBreakerState.Phase { state.phase }

    /// Runs `body` unless the breaker is open; records how it ended.
    public func call<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        let now = ContinuousClock.now
        guard state.isClosed || state.allow(at: now) else {
            let wait = state.reopensAt.map { $0 - now } ?? .zero
            throw DocumentEngineError(.transient, "the document engine's circuit breaker is open (trial in \(wait)); call not attempted")
        }
        do {
            let value = try await body()
            record(success: true)
            return value
        } catch let error as DocumentEngineError where error.isTransient {
            record(success: false)
            throw error
        } catch {
            record(success: true)
            throw error
        }
    }

    /// Whether a worker may receive now: closed → yes; open before its time → no; open after its
    /// time → runs the probe as the one trial and answers whether it closed the breaker.
    public func permitsReceiving() async -> Bool {
        if state.isClosed { return true }
        guard state.allow(at: .now) else { return false }
        do {
            try await probe()
            record(success: true)
            return true
        } catch let error as DocumentEngineError where !error.isTransient {
            record(success: true)
            return true
        } catch {
            record(success: false)
            return false
        }
    }

    private func record(success: Bool) {
        let wasClosed = state.isClosed
        if success { state.recordSuccess() } else { state.recordFailure(at: .now) }
        if wasClosed, !state.isClosed {
            logger.warning("document engine circuit breaker opened", metadata: [
                "failures": "\(settings.failureThreshold)", "openSeconds": "\(settings.openDuration)",
            ])
        } else if !wasClosed, state.isClosed {
            logger.notice("document engine circuit breaker closed")
        }
    }
}

/// A document engine whose every call goes through an ``EngineCircuitBreaker``.
public struct CircuitBreakingEngine: DocumentEngine {
    public let base: any DocumentEngine
    public let breaker: EngineCircuitBreaker

    /// Wraps `base`; the breaker's half-open trial is `base.exists` of a probe id.
    public init(_ base: any DocumentEngine, settings: CircuitBreakerSettings = CircuitBreakerSettings(), logger: Logger = Logger(label: "exchanger.document-engine")) {
        self.base = base
        self.breaker = EngineCircuitBreaker(settings: settings, logger: logger) {
            _ = try await base.exists(try EngineDocumentID(caseID: 1, batchID: 1, documentID: 1, exhibitID: nil))
        }
    }

    @discardableResult
    public func ingest(_ id: EngineDocumentID, pdf: PDFSource, annotations: InstantJSON) async throws -> IngestResult {
        try await breaker.call { try await base.ingest(id, pdf: pdf, annotations: annotations) }
    }
    public func exists(_ id: EngineDocumentID) async throws -> Bool { try await breaker.call { try await base.exists(id) } }
    public func info(_ id: EngineDocumentID) async throws -> EngineDocumentInfo { try await breaker.call { try await base.info(id) } }
    public func document(_ id: EngineDocumentID) async throws -> Data { try await breaker.call { try await base.document(id) } }
    public func annotations(_ id: EngineDocumentID) async throws -> InstantJSON { try await breaker.call { try await base.annotations(id) } }
    public func delete(_ id: EngineDocumentID) async throws { try await breaker.call { try await base.delete(id) } }
    public func shutdown() async throws { try await base.shutdown() }
    public func commentThreads(_ id: EngineDocumentID) async throws -> [CommentThread] {
        try await breaker.call { try await base.commentThreads(id) }
    }
    public func putCommentThreads(_ id: EngineDocumentID, _ threads: [CommentThread]) async throws {
        try await breaker.call { try await base.putCommentThreads(id, threads) }
    }
    public func buildFlattened(pdf: Data, annotations: InstantJSON) async throws -> Data {
        try await breaker.call { try await base.buildFlattened(pdf: pdf, annotations: annotations) }
    }
    public func pageCount(_ id: EngineDocumentID) async throws -> Int { try await breaker.call { try await base.pageCount(id) } }
    public func pageText(_ id: EngineDocumentID, pageIndex: Int) async throws -> String {
        try await breaker.call { try await base.pageText(id, pageIndex: pageIndex) }
    }
}

