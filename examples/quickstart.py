"""reactor's quickstart.

Run it with ``python examples/quickstart.py`` or ``reactor run examples/quickstart.py:app``.
"""

import itertools

import anyio
from anyio.abc import TaskStatus

import reactor
from reactor import Event, Reactor
from reactor.abc import App, Source

app = Reactor()


@app.subscribe("order.*")
async def audit(event: Event) -> None:
    print(f"audit: {event.type} from {event.source}: {event.data}")


@app.subscribe("order.created", retry=reactor.Retry(attempts=3))
async def send_confirmation(event: Event) -> None:
    print(f"emailing the confirmation of order {event.data['id']}")


class Shop(Source):
    """A pretend shop that takes an order every second."""

    async def run(
        self, app: App, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        for order_id in itertools.count(1):
            await app.publish("order.created", {"id": order_id}, source="/shop")
            await app.clock.sleep(1)


app.add_source(Shop())

if __name__ == "__main__":
    app.run()  # Ctrl-C stops the shop, lets running handlers finish, then exits
