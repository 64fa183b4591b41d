// How an app's TypeScript sees the package: compiled against the shipped declarations (dist/*.d.ts)
// by types.test.mjs, never run. Each @ts-expect-error must be an error, or tsc fails.
import {
  GatewayClient,
  GatewayError,
  LoggedOut,
  type LoginResult,
  type OpenIMLoginParams,
  type UserInfo,
} from "../../dist/index.js";

export async function app(): Promise<void> {
  const gw = new GatewayClient({
    baseURL: "https://chat.example.com",
    platformID: 5,
    relogin: () => ({ userID: "alice", code: "000000" }),
    onLoggedOut: (reason) => {
      const known: "banned" | "credentials_refused" | "no_credentials" = reason;
      void known;
    },
  });
  const login: LoginResult = await gw.login({ userID: "alice", code: "000000" });
  const sdk: OpenIMLoginParams = gw.openIM;
  void [login.imToken, sdk.wsAddr, sdk.apiAddr];

  const me: UserInfo = await gw.call("/im/user/get_self_user_info", {});
  const { usersInfo } = await gw.call("/im/user/get_users_info", { userIDs: ["bob"] });
  const time: number = (await gw.call("/im/msg/get_server_time", {})).serverTime;
  const other = await gw.call<{ total: number }>("/im/group/get_joined_group_list", {});
  void [me.nickname, usersInfo?.[0]?.userID, time, other.total];

  // @ts-expect-error: a typed route's body is checked
  await gw.call("/im/user/get_users_info", { userIDs: "bob" });
  // @ts-expect-error: only /im routes are called this way
  await gw.call("/auth/session", {});
  // @ts-expect-error: the state is read-only to the app
  gw.state!.sessionId = "x";

  try {
    await gw.sessionInfo();
  } catch (error) {
    if (error instanceof GatewayError) void [error.status, error.errCode, error.errMsg];
    if (error instanceof LoggedOut) void error.reason;
  }
}
