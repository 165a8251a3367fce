from agent.serve_status import ApplicationStatus, ServeStatus, diagnose, unschedulable_from_message
from serve.serve_config import VersionPlan

# The message Serve 2.60 writes after 30 s for a replica no node can place.
SERVE_MESSAGE = (
    "Deployment 'ModelVersion' in application 'digits--v1' has 1 replicas that have taken more"
    " than 30s to be scheduled. This may be due to waiting for the cluster to auto-scale or for"
    " a runtime environment to be installed. Resources required for each replica: "
    "{'CPU': 0.25, 'GPU': 0.5}, total resources available: {'CPU': 3.5}. Use `ray status` for"
    " more details."
)


def test_serve_message_becomes_one_line():
    assert unschedulable_from_message(SERVE_MESSAGE) == (
        "unschedulable: needs GPU 0.5, cluster has none"
    )
    assert unschedulable_from_message("all good") is None


def test_diagnose_prefers_serve_message_then_plan():
    doc = {
        "applications": {
            "digits--v1": {
                "name": "digits--v1",
                "status": "DEPLOYING",
                "deployments": {
                    "ModelVersion": {
                        "name": "ModelVersion",
                        "status": "UPDATING",
                        "message": SERVE_MESSAGE,
                    }
                },
            }
        }
    }
    app = ServeStatus.parse(doc).applications["digits--v1"]
    assert diagnose(app) == "unschedulable: needs GPU 0.5, cluster has none"
    plan = VersionPlan(
        "digits",
        "v1",
        "digits--v1",
        "/",
        "gpu",
        0.5,
        "unschedulable: needs GPU 0.5, cluster has none",
    )
    fresh = ApplicationStatus(name="digits--v1", status="DEPLOYING")
    assert diagnose(fresh, plan) == plan.problem
    assert diagnose(ApplicationStatus(name="x", status="RUNNING"), plan) is None
    failed = ApplicationStatus(
        name="x", status="DEPLOY_FAILED", message="Traceback...\nIntegrityError: bad"
    )
    assert diagnose(failed) == "deploy_failed: IntegrityError: bad"
