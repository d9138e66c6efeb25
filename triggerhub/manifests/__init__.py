"""wskdeploy-compatible manifests: load and validate (loader), plan against a hub (plan), apply
through the OpenWhisk REST API with rollback (apply), as the `deploy`, `undeploy` and `validate`
commands (commands). Public entry points: deployer.validate_manifest / deploy_manifest /
undeploy_manifest, deploy.deploy_directory, client.HttpWhiskClient and the WhiskClient seam.
"""
