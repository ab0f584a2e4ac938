"""A WAMP subscriber written with Debian's autobahn-python, for tests/net/wamp_test.ts.

Usage: wamp_python_client.py <ws-url> <realm> <topic-uri> <events>
Joins the realm, subscribes to the topic, prints each event's first argument (the v1 frame) as one
JSON line, and leaves after <events> events. Errors go to stderr with exit code 1.
"""

import asyncio
import json
import sys

from autobahn.asyncio.wamp import ApplicationRunner, ApplicationSession

URL, REALM, TOPIC, WANTED = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


class Subscriber(ApplicationSession):
    async def onJoin(self, details):
        received = 0
        done = asyncio.get_running_loop().create_future()

        def on_event(frame):
            nonlocal received
            print(json.dumps(frame), flush=True)
            received += 1
            if received >= WANTED and not done.done():
                done.set_result(None)

        await self.subscribe(on_event, TOPIC)
        print(json.dumps({"subscribed": TOPIC}), flush=True)
        await done
        self.leave()

    def onDisconnect(self):
        asyncio.get_event_loop().stop()


if __name__ == "__main__":
    ApplicationRunner(URL, REALM).run(Subscriber)
