"""Tools service: dictionary and learner-data tools over DynamoDB, scoped to the learner."""
