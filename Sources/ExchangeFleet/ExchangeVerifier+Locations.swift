import Broker
import CaseData
import Foundation
import Logging
import ObjectStorage

extension ExchangeVerifier {
    /// Where a finished exchange's data lives: everything the verifier reads, given by URL, so
    /// `exchanger run` (its workspace) and `exchanger verify` (any machine that reaches the broker,
    /// the case databases and the object store) check exchanges the same way.
    public struct Locations: Sendable, Hashable {
        /// The broker database URL (the exchange record and its events).
        public var brokerURL: String
        /// The case-database URL template (contains `{database}`).
        public var caseDatabaseURL: String
        /// The case-database name prefix (nil: the default).
        public var caseDatabasePrefix: String?
        /// The object store of the cases (`file:///dir` or `s3://bucket[/prefix]`).
        public var storageURL: String
        /// The document engine (`local` or a Nutrient Document Engine URL).
        public var documentEngineURL: String
        /// The environment the store and the engine client are opened with (S3 endpoint and
        /// credentials, engine token).
        public var environment: [String: String]

        /// Locations with every field given.
        public init(
            brokerURL: String, caseDatabaseURL: String, caseDatabasePrefix: String?, storageURL: String, documentEngineURL: String,
            environment: [String: String]
        ) {
            self.brokerURL = brokerURL
            self.caseDatabaseURL = caseDatabaseURL
            self.caseDatabasePrefix = caseDatabasePrefix
            self.storageURL = storageURL
            self.documentEngineURL = documentEngineURL
            self.environment = environment
        }
    }

    /// Connects to every location, verifies exchange `jobID` exactly (see ``verify(jobID:expectedDocumentEvents:)``)
    /// and closes the connections again.
    /// - Throws: ``ExchangeVerifierError`` when the verification cannot run (no such exchange, a
    ///   database or the store unreachable); errors of opening the broker, store or case databases.
    public static func verify(
        jobID: String, at locations: Locations, settings: Settings = Settings(), logger: Logger
    ) async throws -> ExchangeVerification {
        let broker = try await Broker.connect(url: locations.brokerURL, logger: logger)
        let store: any ObjectStore
        do {
            store = try await ObjectStorage.open(locations.storageURL, environment: locations.environment, logger: logger)
        } catch {
            await broker.close()
            throw error
        }
        do {
            let databases = try CaseDatabases(urlTemplate: locations.caseDatabaseURL, prefix: locations.caseDatabasePrefix)
            var settings = settings
            settings.documentEngineURL = locations.documentEngineURL
            settings.environment = locations.environment
            let verification = try await ExchangeVerifier(broker: broker, caseDatabases: databases, store: store, settings: settings, logger: logger)
                .verify(jobID: jobID)
            try? await store.shutdown()
            await broker.close()
            return verification
        } catch {
            try? await store.shutdown()
            await broker.close()
            throw error
        }
    }
}
