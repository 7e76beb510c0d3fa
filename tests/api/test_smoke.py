from .helpers import act, create, history


async def test_create_start_pause_resume_complete(client):
    session = await create(client)
    assert session["status"] == "PENDING"
    running = await act(client, session["id"], "start")
    assert running["status"] == "RUNNING"
    await act(client, session["id"], "pause")
    await act(client, session["id"], "resume")
    done = await act(client, session["id"], "complete")
    assert done["status"] == "COMPLETED"
    seqs = [row["seq"] for row in await history(client, session["id"])]
    assert seqs == [1, 2, 3, 4, 5]
