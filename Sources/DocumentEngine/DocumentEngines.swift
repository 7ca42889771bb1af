import ExchangerLogging
import Foundation
import Logging
import ObjectStorage

/// Which document engine a URL names.
///
/// | URL | engine |
/// |---|---|
/// | `local`, `local:` (the default) | ``LocalDocumentEngine`` on the case object store |
/// | `local:<storage-url>`, `file:///dir`, `s3://bucket[/prefix]` | ``LocalDocumentEngine`` on that store (PDFs still read from the case store) |
/// | `nutrient://host[:port]`, `nutrient+https://…`, `https://…` | ``NutrientDocumentEngine`` at `https://host[:port]` |
/// | `nutrient+http://…`, `http://…` | ``NutrientDocumentEngine`` at `http://…`: plain HTTP, spelled out (a warning is logged) |
///
/// A Nutrient URL carries no credentials (the token comes from ``NutrientTokenCache``); a URL with
/// user info, a query or a fragment is refused.
public enum DocumentEngineLocation: Sendable, Hashable, CustomStringConvertible {
    /// The local engine, on the case store (nil) or on the store of this URL.
    case local(storageURL: String?)
    /// Nutrient Document Engine at this base URL (`http(s)://host[:port][/path]`).
    case nutrient(baseURL: String)

    /// Parses a document-engine URL; throws ``DocumentEngineError/Code/invalidURL`` for anything
    /// not in the table above.
    public init(_ url: String) throws(DocumentEngineError) {
        let text = url.trimmingCharacters(in: .whitespaces)
        let lower = text.lowercased()
        if lower.isEmpty || lower == "local" || lower == "local:" || lower == "local://" {
            self = .local(storageURL: nil)
            return
        }
        if lower.hasPrefix("nutrient") || lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            self = .nutrient(baseURL: try Self.nutrientBaseURL(text))
            return
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
        case .nutrient(let baseURL): "nutrient:\(baseURL)"
        }
    }

    private static func nutrientBaseURL(_ text: String) throws(DocumentEngineError) -> String {
        let lower = text.lowercased()
        let scheme: String
        let rest: Substring
        if lower.hasPrefix("nutrient+https://") {
            (scheme, rest) = ("https", text.dropFirst("nutrient+https://".count))
        } else if lower.hasPrefix("nutrient+http://") {
            (scheme, rest) = ("http", text.dropFirst("nutrient+http://".count))
        } else if lower.hasPrefix("nutrient://") {
            // The token travels with every request: the short form means HTTPS.
            (scheme, rest) = ("https", text.dropFirst("nutrient://".count))
        } else if lower.hasPrefix("https://") {
            (scheme, rest) = ("https", text.dropFirst("https://".count))
        } else if lower.hasPrefix("http://") {
            (scheme, rest) = ("http", text.dropFirst("http://".count))
        } else {
            throw DocumentEngineError(.invalidURL, "'\(text.prefix(200))' is not nutrient://, nutrient+http(s):// or http(s)://")
        }
        var trimmed = String(rest)
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        let host = trimmed.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
        guard !host.isEmpty, !trimmed.contains("@"), !trimmed.contains("?"), !trimmed.contains("#"),
              !trimmed.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 } ?? false })
        else {
            throw DocumentEngineError(
                .invalidURL, "Nutrient URL '\(DocumentEngines.redacted(text))' needs a host and no user info, query or fragment (the token is EXCHANGER_NUTRIENT_API_TOKEN)")
        }
        return "\(scheme)://\(trimmed)"
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
    /// The environment variable naming the local engine's qpdf (for brand_in): `EXCHANGER_QPDF_PATH` (default `qpdf` on `PATH`).
    public static let qpdfVariable = "EXCHANGER_QPDF_PATH"
    /// The environment variables naming poppler's programs for brand_in: `EXCHANGER_PDFINFO_PATH`,
    /// `EXCHANGER_PDFTOTEXT_PATH`, `EXCHANGER_PDFTOPPM_PATH` (default: the names on `PATH`).
    public static let pdfinfoVariable = "EXCHANGER_PDFINFO_PATH"
    public static let pdftotextVariable = "EXCHANGER_PDFTOTEXT_PATH"
    public static let pdftoppmVariable = "EXCHANGER_PDFTOPPM_PATH"
    /// The resolution of redacted pages, dots per inch: `EXCHANGER_REDACTION_DPI` (default 150, 36–1200).
    public static let redactionResolutionVariable = "EXCHANGER_REDACTION_DPI"
    /// The JPEG quality of redacted pages: `EXCHANGER_REDACTION_JPEG_QUALITY` (default 90, 1–100).
    public static let redactionQualityVariable = "EXCHANGER_REDACTION_JPEG_QUALITY"
    /// How long one run of qpdf or a poppler program may take: `EXCHANGER_PDF_TOOL_TIMEOUT_SECONDS` (default 300, 1–86400).
    public static let toolTimeoutVariable = "EXCHANGER_PDF_TOOL_TIMEOUT_SECONDS"

    /// The local engine's settings from `environment`: the key prefix, the PDF programs' paths and
    /// the redaction raster's resolution and quality. Throws ``DocumentEngineError/Code/invalidURL``
    /// naming a numeric setting that is not a whole number in its range.
    public static func localSettings(environment: [String: String]) throws(DocumentEngineError) -> LocalDocumentEngine.Settings {
        var settings = LocalDocumentEngine.Settings()
        if let prefix = environment[prefixVariable], !prefix.isEmpty { settings.prefix = prefix }
        if let qpdf = environment[qpdfVariable], !qpdf.isEmpty { settings.qpdfPath = qpdf }
        if let path = environment[pdfinfoVariable], !path.isEmpty { settings.pdfinfoPath = path }
        if let path = environment[pdftotextVariable], !path.isEmpty { settings.pdftotextPath = path }
        if let path = environment[pdftoppmVariable], !path.isEmpty { settings.pdftoppmPath = path }
        func number(_ variable: String, _ range: ClosedRange<Int>) throws(DocumentEngineError) -> Int? {
            guard let text = environment[variable], !text.isEmpty else { return nil }
            guard let value = Int(text), range.contains(value) else {
                throw DocumentEngineError(.invalidURL, "\(variable)='\(text)' is not a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        if let dpi = try number(redactionResolutionVariable, 36...1200) { settings.redactionResolution = dpi }
        if let quality = try number(redactionQualityVariable, 1...100) { settings.redactionJPEGQuality = quality }
        if let seconds = try number(toolTimeoutVariable, 1...86_400) { settings.toolTimeout = .seconds(seconds) }
        return settings
    }

    /// Checks that an engine at `url` can brand annotations in, before anything is started: the
    /// local engine needs qpdf and poppler-utils (for true redaction); a Nutrient engine does it
    /// itself. Throws ``DocumentEngineError/Code/unsupported`` naming the program, the package and
    /// the setting, or ``DocumentEngineError/Code/invalidURL`` for a URL or setting it cannot read.
    public static func checkBrandIn(url: String, environment: [String: String]) throws(DocumentEngineError) {
        guard case .local = try DocumentEngineLocation(url) else { return }
        let settings = try localSettings(environment: environment)
        _ = try PDFTool.locate(settings.qpdfPath, name: "qpdf", variable: qpdfVariable, package: "qpdf")
        _ = try PopplerTools(settings)
    }

    /// Checks that the engine at `url` can be called at all, before anything is started: a Nutrient
    /// engine needs its API token (`EXCHANGER_NUTRIENT_API_TOKEN`, or a readable, non-empty file
    /// named by `EXCHANGER_NUTRIENT_API_TOKEN_FILE`). Without it every call would fail and every
    /// document would be retried into the dead-letter queue; the local engine needs none.
    /// - Throws: ``DocumentEngineError/Code/invalidURL`` for a URL it cannot read, or the token's
    ///   error naming the variables.
    public static func checkCredentials(url: String, environment: [String: String]) throws(DocumentEngineError) {
        guard case .nutrient = try DocumentEngineLocation(url) else { return }
        do {
            _ = try NutrientTokenCache.token(from: environment)
        } catch let error as DocumentEngineError {
            throw error
        } catch {
            throw DocumentEngineError(.transient, "cannot read the Nutrient API token: \(error)")
        }
    }

    /// `url` safe for logs: passwords and tokens masked (``SecretRedaction``), at most 200 characters.
    public static func redacted(_ url: String) -> String { String(SecretRedaction.redact(url).prefix(200)) }

    /// Opens the engine `url` names (see ``DocumentEngineLocation``).
    /// - Parameters:
    ///   - caseStore: the case object store: PDFs are read from it, and the plain local engine keeps
    ///     its documents in it (without taking ownership: shut the store down yourself).
    ///   - environment: `EXCHANGER_DOCUMENT_ENGINE_PREFIX` (default `document-engine`) and, for an
    ///     engine on its own S3 store, the AWS settings.
    ///   For Nutrient: `EXCHANGER_NUTRIENT_API_TOKEN` / `_FILE`, `EXCHANGER_NUTRIENT_TIMEOUT_SECONDS`,
    ///   `EXCHANGER_NUTRIENT_MAX_ATTEMPTS`; for the local engine also ``localSettings(environment:)``.
    /// - Throws: ``DocumentEngineError`` (`invalidURL`), or the store's error.
    public static func open(
        url: String, caseStore: any ObjectStore, environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger = Logger(label: "exchanger.document-engine")
    ) async throws -> any DocumentEngine {
        let settings = try localSettings(environment: environment)
        switch try DocumentEngineLocation(url) {
        case .nutrient(let baseURL):
            if baseURL.hasPrefix("http://") {
                logger.warning(
                    "the Nutrient Document Engine is reached over plain HTTP: its API token travels unencrypted",
                    metadata: ["documentEngine": "\(baseURL)"])
            }
            let nutrient = try NutrientDocumentEngine.Settings(baseURL: baseURL, environment: environment)
            return NutrientDocumentEngine(
                settings: nutrient, sourceStore: caseStore, tokens: NutrientTokenCache.shared(environment: environment), logger: logger)
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
