"""Reusable fakes for tests: real local servers speaking providers' wire formats."""
