import ExchangerLogging
import Foundation

/// Where one `exchanger run` keeps everything: the broker and case databases, the object store,
/// the generated supervisor configuration, the API token and the logs.
///
/// Each of the four data locations comes from the environment when it is set
/// (`EXCHANGER_DATABASE_URL` or `EXCHANGER_DATABASE_URL_FILE`, `EXCHANGER_CASE_DATABASE_URL`,
/// `EXCHANGER_STORAGE_URL`, `EXCHANGER_DOCUMENT_ENGINE_URL`), so the same run works against
/// PostgreSQL and S3; otherwise it lives in the workspace directory (SQLite, a local directory
/// and the local document engine), which needs no server at all.
public struct FleetWorkspace: Sendable, Hashable {
    /// The workspace directory (absolute).
    public var directory: String
    /// The broker database URL.
    public var brokerURL: String
    /// The case-database URL template (contains `{database}`).
    public var caseDatabaseURL: String
    /// The case-database name prefix, when set in the environment.
    public var caseDatabasePrefix: String?
    /// The object store of the cases.
    public var storageURL: String
    /// The document engine (`local` or a Nutrient Document Engine URL).
    public var documentEngineURL: String
    /// Which of the locations are the workspace's own (not taken from the environment).
    public var embedded: Set<Location>
    /// More variables for every process of the run and for this process's own storage access
    /// (for example `AWS_ENDPOINT_URL_S3` and credentials of an S3-compatible store).
    public var extraEnvironment: [String: String] = [:]

    /// A data location of the workspace.
    public enum Location: String, Sendable, Hashable, CaseIterable {
        case broker, caseDatabases, storage, documentEngine
    }

    /// The workspace in `directory` (made absolute), with every location the environment does not
    /// set kept inside it.
    public init(directory: String, environment: [String: String]) throws {
        let absolute = URL(fileURLWithPath: directory).standardizedFileURL.path
        self.directory = absolute
        var embedded: Set<Location> = []
        if let url = try Self.brokerURL(environment) {
            brokerURL = url
        } else {
            brokerURL = "sqlite://\(absolute)/broker.sqlite"
            embedded.insert(.broker)
        }
        if let url = Self.value(environment, "EXCHANGER_CASE_DATABASE_URL") {
            caseDatabaseURL = url
        } else {
            caseDatabaseURL = "sqlite://\(absolute)/cases/{database}.sqlite"
            embedded.insert(.caseDatabases)
        }
        caseDatabasePrefix = Self.value(environment, "EXCHANGER_CASE_DATABASE_PREFIX")
        if let url = Self.value(environment, "EXCHANGER_STORAGE_URL") {
            storageURL = url
        } else {
            storageURL = "file://\(absolute)/storage"
            embedded.insert(.storage)
        }
        if let url = Self.value(environment, "EXCHANGER_DOCUMENT_ENGINE_URL") {
            documentEngineURL = url
        } else {
            documentEngineURL = "local"
            embedded.insert(.documentEngine)
        }
        self.embedded = embedded
    }

    /// The generated supervisor configuration.
    public var supervisorConfigurationPath: String { directory + "/supervisor.conf" }
    /// The file holding the run's API token (mode 0600).
    public var apiTokenPath: String { directory + "/api-token" }
    /// The log directory: `fleet.log` (every process's JSON lines) and the supervisor's own.
    public var logDirectory: String { directory + "/logs" }
    /// Every JSON log line of the supervisor and its processes.
    public var fleetLogPath: String { logDirectory + "/fleet.log" }

    /// Creates the directories the workspace needs (the workspace, logs, and the embedded case
    /// databases' and store's directories).
    public func prepare() throws {
        let manager = FileManager.default
        var directories = [directory, logDirectory]
        if embedded.contains(.caseDatabases) { directories.append(directory + "/cases") }
        if embedded.contains(.storage) { directories.append(directory + "/storage") }
        for path in directories {
            try manager.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
    }

    /// The variables every process of the run gets (over the caller's own environment).
    public var processEnvironment: [String: String] {
        var environment = [
            "EXCHANGER_DATABASE_URL": brokerURL,
            "EXCHANGER_DATABASE_URL_FILE": "",
            "EXCHANGER_CASE_DATABASE_URL": caseDatabaseURL,
            "EXCHANGER_STORAGE_URL": storageURL,
            "EXCHANGER_DOCUMENT_ENGINE_URL": documentEngineURL,
            "EXCHANGER_API_TOKENS": "",
            "EXCHANGER_API_TOKENS_FILE": apiTokenPath,
        ]
        if let caseDatabasePrefix { environment["EXCHANGER_CASE_DATABASE_PREFIX"] = caseDatabasePrefix }
        return environment.merging(extraEnvironment) { ours, _ in ours }
    }

    /// This process's environment with ``extraEnvironment`` over it (for opening the store here).
    public var storageEnvironment: [String: String] {
        ProcessInfo.processInfo.environment.merging(extraEnvironment) { _, extra in extra }
    }

    /// Writes a new random API token to ``apiTokenPath`` (readable by the owner only) and returns it.
    public func writeAPIToken() throws -> String {
        var generator = SystemRandomNumberGenerator()
        let token = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        let created = FileManager.default.createFile(
            atPath: apiTokenPath, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600])
        guard created else { throw FleetError(.workspace, "cannot write the API token file \(apiTokenPath)") }
        return token
    }

    /// The same URL with any password replaced by `***`, for printing.
    public static func redacted(_ url: String) -> String { SecretRedaction.redact(url) }

    private static func value(_ environment: [String: String], _ name: String) -> String? {
        guard let value = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else { return nil }
        return value
    }

    private static func brokerURL(_ environment: [String: String]) throws -> String? {
        if let url = value(environment, "EXCHANGER_DATABASE_URL") { return url }
        guard let file = value(environment, "EXCHANGER_DATABASE_URL_FILE") else { return nil }
        do {
            let text = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !text.isEmpty else { throw FleetError(.workspace, "EXCHANGER_DATABASE_URL_FILE \(file) is empty") }
            return text
        } catch let error as FleetError {
            throw error
        } catch {
            throw FleetError(.workspace, "cannot read EXCHANGER_DATABASE_URL_FILE \(file): \(error)")
        }
    }
}
