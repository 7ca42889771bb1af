import Broker
import ExchangerEvents
import ObjectStorage

/// An error a handler raises with its kind decided where it happens (design, "Errors").
///
/// - ``Kind/recoverable``: timeouts, 5xx, throttling, connection loss — retried with backoff
///   through the visibility timeout, up to the queue's max receive count, then dead-lettered.
/// - ``Kind/permanent``: a bad message, 4xx — dead-lettered now, no retries.
/// - ``Kind/silent``: the work was already done — acknowledged and logged.
public struct WorkerError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable { case recoverable, permanent, silent }

    public var kind: Kind
    public var message: String
    /// For recoverable errors: wait at least this long before the next attempt (e.g. Retry-After).
    public var retryAfter: Duration?

    public init(_ kind: Kind, _ message: String, retryAfter: Duration? = nil) {
        self.kind = kind
        self.message = message
        self.retryAfter = retryAfter
    }

    public static func recoverable(_ message: String, retryAfter: Duration? = nil) -> WorkerError {
        WorkerError(.recoverable, message, retryAfter: retryAfter)
    }
    public static func permanent(_ message: String) -> WorkerError { WorkerError(.permanent, message) }
    public static func silent(_ message: String) -> WorkerError { WorkerError(.silent, message) }

    public var description: String { "\(kind): \(message)" }

    /// Decides the kind of any error that reaches the runtime.
    ///
    /// ``WorkerError`` keeps its kind; ``EventError`` (a body that is not what it claims to be) and
    /// `DecodingError` are permanent; object-storage and broker errors are recoverable when
    /// transient, not-found and invalid input permanent; anything unknown is recoverable (bounded
    /// by the max receive count, so it ends in the dead-letter queue rather than looping).
    public static func classify(_ error: any Error) -> Kind {
        switch error {
        case let error as WorkerError:
            return error.kind
        case is EventError, is DecodingError:
            return .permanent
        case let error as ObjectStorageError:
            if error.isTransient { return .recoverable }
            switch error.code {
            case .notFound, .invalidKey, .invalidURL, .failed: return .permanent
            default: return .recoverable  // configuration / access denied: fixable by an operator
            }
        case let error as BrokerError:
            if error.isTransient { return .recoverable }
            switch error.code {
            case .invalidMessage, .invalidAttribute, .messageTooLarge, .invalidName: return .permanent
            default: return .recoverable
            }
        case is CancellationError:
            return .recoverable
        default:
            return .recoverable
        }
    }
}
