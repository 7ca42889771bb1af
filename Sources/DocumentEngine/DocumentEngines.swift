import Foundation
import Logging
import ObjectStorage

/// Which document engine a URL names.
///
/// | URL | engine |
/// |---|---|
/// | `local`, `local:` (the default) | ``LocalDocumentEngine`` on the case object store |
/// | `local:<storage-url>`, `file:///dir`, `s3://bucket[/prefix]` | ``LocalDocumentEngine`` on that store (PDFs still read from the case store) |
/// | `nutrient://…`, `nutrient+https://…`, `http(s)://…` | Nutrient Document Engine: not available in this build (``DocumentEngineError/Code/unsupported``) |
public enum DocumentEngineLocation: Sendable, Hashable, CustomStringConvertible {
    /// The local engine, on the case store (nil) or on the store of this URL.
    case local(storageURL: String?)

    /// Parses a document-engine URL; throws ``DocumentEngineError/Code/unsupported`` for a Nutrient
    /// URL and ``DocumentEngineError/Code/invalidURL`` for anything not in the table above.
    public init(_ url: String) throws(DocumentEngineError) {
        let text = url.trimmingCharacters(in: .whitespaces)
        let lower = text.lowercased()
        if lower.isEmpty || lower == "local" || lower == "local:" || lower == "local://" {
            self = .local(storageURL: nil)
            return
        }
        if lower.hasPrefix("nutrient") || lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            throw DocumentEngineError(
                .unsupported,
                "the Nutrient Document Engine client is not available in this build yet ('\(text.prefix(200))'); use 'local'")
        }
        let storageURL: String
        if lower.hasPrefix("local:") {
            storageURL = String(text.dropFirst("local:".count))
        } else if lower.hasPrefix("file://") || lower.hasPrefix("s3://") {
            storageURL = text
        } else {
            throw DocumentEngineError(.invalidURL, "'\(text.prefix(200))' is not a document-engine URL (local, local:<storage-url>, file://, s3://)")
        }
        do {
            _ = try StorageLocation(storageURL)
        } catch {
            throw DocumentEngineError(.invalidURL, "document engine '\(text.prefix(200))': \(error.message)")
        }
        self = .local(storageURL: storageURL)
    }

    public var description: String {
        switch self {
        case .local(let storageURL): storageURL.map { "local:\($0)" } ?? "local"
        }
    }
}

/// Opens document engines from configuration.
public enum DocumentEngines {
    /// The environment variable naming the engine: `EXCHANGER_DOCUMENT_ENGINE_URL`.
    public static let environmentVariable = "EXCHANGER_DOCUMENT_ENGINE_URL"
    /// The environment variable overriding the local engine's key prefix: `EXCHANGER_DOCUMENT_ENGINE_PREFIX`.
    public static let prefixVariable = "EXCHANGER_DOCUMENT_ENGINE_PREFIX"
    /// The engine when none is configured: `local`.
    public static let defaultURL = "local"

    /// Opens the engine `url` names (see ``DocumentEngineLocation``).
    /// - Parameters:
    ///   - caseStore: the case object store: PDFs are read from it, and the plain local engine keeps
    ///     its documents in it (without taking ownership: shut the store down yourself).
    ///   - environment: `EXCHANGER_DOCUMENT_ENGINE_PREFIX` (default `document-engine`) and, for an
    ///     engine on its own S3 store, the AWS settings.
    /// - Throws: ``DocumentEngineError`` (`unsupported` for Nutrient, `invalidURL`), or the store's error.
    public static func open(
        url: String, caseStore: any ObjectStore, environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger = Logger(label: "exchanger.document-engine")
    ) async throws -> any DocumentEngine {
        var settings = LocalDocumentEngine.Settings()
        if let prefix = environment[prefixVariable], !prefix.isEmpty { settings.prefix = prefix }
        switch try DocumentEngineLocation(url) {
        case .local(nil):
            return try LocalDocumentEngine(store: caseStore, settings: settings, logger: logger)
        case .local(let storageURL?):
            let store = try await ObjectStorage.open(storageURL, environment: environment, logger: logger)
            do {
                return try LocalDocumentEngine(store: store, sourceStore: caseStore, settings: settings, ownsStore: true, logger: logger)
            } catch {
                try? await store.shutdown()
                throw error
            }
        }
    }
}
