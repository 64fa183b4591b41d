// The demo web chat: login through the gateway's JavaScript client, messages through the official
// OpenIM SDK, which it hands the imToken, wsAddr and apiAddr the login answered.
//
// Query parameters: `gateway` (default: the page's own origin, as `messenger-gw dev` serves it at
// /demo/), and `apiAddr` / `wsAddr` to point the SDK elsewhere than the login said.
import { GatewayClient, LoggedOut } from "@messenger-gw/client";
import { CbEvents, getSDK } from "@openim/client-sdk/lib/index.modern.mjs";

const params = new URLSearchParams(location.search);
const gatewayURL = params.get("gateway") ?? location.origin;
const SINGLE_CHAT = 1;
const TEXT = 101;

const $ = (selector) => document.querySelector(selector);
const show = (element, text) => {
  element.textContent = text;
  element.hidden = false;
};

/** Everything of the logged-in user; null on the login screen. */
let chat = null;

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#login-error").hidden = true;
  $("#notice").hidden = true;
  const credentials = { userID: $("#user-id").value.trim(), code: $("#code").value.trim() };
  try {
    chat = await logIn(credentials);
  } catch (error) {
    show($("#login-error"), describe(error));
  }
});

$("#logout").addEventListener("click", async () => {
  const ending = chat;
  await ending?.gw.logout().catch(() => {});
  leave(ending, null);
});

$("#new-chat").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#new-chat-error").hidden = true;
  const peer = $("#peer-id").value.trim();
  try {
    // Asked of the gateway through the JavaScript client: a signed /im call.
    const { usersInfo } = await chat.gw.call("/im/user/get_users_info", { userIDs: [peer] });
    if (!usersInfo?.length) throw new Error(`${peer} has never logged in`);
    const { data } = await chat.sdk.getOneConversation({ sourceID: peer, sessionType: SINGLE_CHAT });
    $("#peer-id").value = "";
    await openConversation(data);
  } catch (error) {
    if (!(error instanceof LoggedOut)) show($("#new-chat-error"), describe(error));
  }
});

$("#composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const open = chat?.open;
  const text = $("#text").value;
  if (!open || !text) return;
  $("#text").value = "";
  const message = (await chat.sdk.createTextMessage(text)).data;
  const { data } = await chat.sdk.sendMessage({ recvID: open.userID, groupID: "", message });
  if (chat?.open !== open) return;
  appendMessage(data);
  await refreshConversations(); // a first message puts the conversation in the list
});

async function logIn(credentials) {
  const session = { gw: null, sdk: null, me: credentials.userID, open: null };
  session.gw = new GatewayClient({
    baseURL: gatewayURL,
    platformID: 5, // Web
    // The login hook, called when the session has expired or was revoked. The dev OTP can be sent
    // again; a real app would ask the user, or log in with the JWT it already holds.
    relogin: () => credentials,
    onLoggedOut: (reason) => leave(session, reason),
    onLogin: (login, renewed) => {
      // A renewal reuses the user's stored imToken; only a new one needs a new SDK login.
      if (renewed && session.sdk && login.imToken !== session.sdkToken) restartSDK(session);
    },
  });
  await session.gw.login(credentials);
  const self = await session.gw.call("/im/user/get_self_user_info", {});
  await startSDK(session);
  $("#me").textContent = self.nickname || self.userID;
  $("#login").hidden = true;
  $("#chat").hidden = false;
  window.webChat = session; // for a look from the browser's console, and for the tests
  return session;
}

async function startSDK(session) {
  const sdk = getSDK();
  session.sdk = sdk;
  const synced = new Promise((resolve, reject) => {
    sdk.on(CbEvents.OnSyncServerFinish, resolve);
    sdk.on(CbEvents.OnSyncServerFailed, () => reject(new Error("the OpenIM SDK could not sync")));
    sdk.on(CbEvents.OnConnectFailed, ({ errCode, errMsg }) => reject(new Error(`OpenIM refused: ${errCode} ${errMsg}`)));
  });
  sdk.on(CbEvents.OnRecvNewMessages, ({ data }) => session === chat && received(data));
  sdk.on(CbEvents.OnConversationChanged, () => session === chat && refreshConversations());
  sdk.on(CbEvents.OnNewConversation, () => session === chat && refreshConversations());
  for (const kicked of [CbEvents.OnKickedOffline, CbEvents.OnUserTokenInvalid, CbEvents.OnUserTokenExpired]) {
    sdk.on(kicked, () => session === chat && checkSession(session));
  }
  const login = session.gw.openIM;
  session.sdkToken = login.token;
  await sdk.login({
    ...login,
    apiAddr: params.get("apiAddr") ?? login.apiAddr,
    wsAddr: params.get("wsAddr") ?? login.wsAddr,
    logLevel: 5, // silent
  });
  await synced;
  if (session === chat || chat === null) await refreshConversations(session);
}

async function restartSDK(session) {
  stopSDK(session);
  await startSDK(session);
}

function stopSDK(session) {
  const sdk = session?.sdk;
  if (!sdk) return;
  session.sdk = null;
  // logout() fails once OpenIM has dropped the connection; the socket must not reconnect then.
  sdk.logout().catch(() => sdk.wsManager?.close?.());
}

/** The SDK was logged out: ask the gateway why. A ban ends the session there (onLoggedOut says so). */
async function checkSession(session) {
  let reason = "elsewhere"; // the session holds: another login took the imToken's place
  try {
    await session.gw.sessionInfo();
  } catch (error) {
    if (error instanceof LoggedOut) return;
    reason = "disconnected";
  }
  // Not logged in again here: two pages of one user and platform would take turns kicking each other.
  leave(session, reason);
}

const REASONS = {
  banned: "Your account is banned: you were logged out.",
  credentials_refused: "Your login is no longer accepted: you were logged out.",
  no_credentials: "Your session ended: log in again.",
  elsewhere: "You logged in somewhere else on this platform, so you were logged out here.",
  disconnected: "The connection to the gateway was lost: log in again.",
};

/** Back to the login screen; `reason` says why when the gateway ended the session. */
function leave(session, reason) {
  stopSDK(session);
  if (chat !== session) return;
  chat = null;
  window.webChat = null;
  $("#chat").hidden = true;
  $("#login").hidden = false;
  $("#messages").replaceChildren();
  $("#conversations").replaceChildren();
  if (reason) {
    show($("#notice"), REASONS[reason] ?? `Logged out (${reason}).`);
    $("#notice").dataset.reason = reason;
  }
}

async function refreshConversations(session = chat) {
  const { data } = await session.sdk.getConversationListSplit({ offset: 0, count: 100 });
  const list = $("#conversations");
  list.replaceChildren(
    ...data.map((conversation) => {
      const item = document.createElement("li");
      item.dataset.conversationId = conversation.conversationID;
      item.classList.toggle("open", conversation.conversationID === session.open?.conversationID);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = conversation.showName || conversation.userID;
      const latest = document.createElement("span");
      latest.className = "latest";
      latest.textContent = preview(conversation.latestMsg);
      item.append(name, latest);
      if (conversation.unreadCount > 0) {
        const unread = document.createElement("span");
        unread.className = "unread";
        unread.textContent = String(conversation.unreadCount);
        item.append(unread);
      }
      item.addEventListener("click", () => openConversation(conversation));
      return item;
    }),
  );
}

function preview(latestMsg) {
  if (!latestMsg) return "";
  try {
    const message = JSON.parse(latestMsg);
    return message.contentType === TEXT ? message.textElem?.content ?? "" : "[not text]";
  } catch {
    return "";
  }
}

async function openConversation(conversation) {
  chat.open = conversation;
  $("#conversation-title").textContent = conversation.showName || conversation.userID;
  $("#composer").hidden = false;
  const { data } = await chat.sdk.getAdvancedHistoryMessageList({
    conversationID: conversation.conversationID,
    count: 50,
    startClientMsgID: "",
    viewType: 0,
  });
  $("#messages").replaceChildren();
  for (const message of data.messageList) appendMessage(message);
  await markRead(conversation);
  await refreshConversations();
  $("#text").focus();
}

async function markRead(conversation) {
  await chat.sdk.markConversationMessageAsRead(conversation.conversationID).catch(() => {}); // nothing unread
}

function received(messages) {
  const open = chat.open;
  const mine = messages.filter((m) => open && m.sessionType === SINGLE_CHAT && [m.sendID, m.recvID].includes(open.userID));
  for (const message of mine) appendMessage(message);
  if (mine.length) markRead(open);
}

function appendMessage(message) {
  const list = $("#messages");
  if (list.querySelector(`[data-client-msg-id="${CSS.escape(message.clientMsgID)}"]`)) return;
  const item = document.createElement("li");
  item.dataset.clientMsgId = message.clientMsgID;
  item.classList.toggle("mine", message.sendID === chat.me);
  item.textContent = message.contentType === TEXT ? message.textElem?.content : "[not text]";
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

function describe(error) {
  if (error instanceof TypeError) return `Cannot reach the gateway at ${gatewayURL} (${error.message}).`;
  return error?.errMsg || error?.message || String(error);
}
