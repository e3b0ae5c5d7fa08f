"""The portal's domains, each with models, schemas, services and controllers."""
