-- Runs once, when the postgres service initialises its volume: the database of the Nutrient
-- Document Engine (compose profile "nutrient"). The broker database (exchanger) is made by the
-- image itself from POSTGRES_DB; the case databases ({prefix}_{caseId}) belong to the system that
-- owns the cases.
CREATE DATABASE document_engine;
