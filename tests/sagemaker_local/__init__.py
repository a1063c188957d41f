"""SDK local-mode tests: a package, so that its ``scope="package"`` fixtures (moto, environment) end with it."""
