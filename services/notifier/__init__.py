"""The notifier: follow-up tasks for newly lapsed customers, closed by comebacks."""
